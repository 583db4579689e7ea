//! RabbitMQ transport: intake consumer, replies, dead-letter, outbox relay (issue 3).
