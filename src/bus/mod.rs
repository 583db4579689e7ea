//! RabbitMQ transport. `serve` runs the engine against the broker: declares the topology,
//! consumes commands (acked only after their group is durable), replies, dead-letters poison,
//! and relays every event to the events exchange through the outbox. It reconnects with a
//! bounded backoff and resumes where the log and the relay cursor say; after a storage error
//! it reopens the data dir once the fault clears (`storage`); it stops cleanly when `shutdown`
//! turns true.

pub mod config;
pub mod consumer;
pub mod delivery;
pub mod isolated;
pub mod relay;
pub mod routing;
pub mod shards;
pub mod storage;
pub mod topology;
pub mod writer;

pub use config::BusConfig;

use crate::engine::Engine;
use consumer::{Intake, IntakeError, IntakeObserver};
use isolated::Isolated;
use lapin::options::{BasicQosOptions, ConfirmSelectOptions};
use lapin::{Connection, ConnectionProperties};
use relay::Relay;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use storage::Storage;
use tokio::sync::{watch, Notify};
use writer::{OnGroup, Writer};

/// The properties of a command message (events/README.md, "The message contract"): persistent
/// JSON, `user_id` = the connection's user, replies to `reply_to`, `correlation_id` and
/// `message_id` = the command id.
pub fn command_properties(user: &str, reply_to: &lapin::types::ShortString, command_id: &str) -> lapin::BasicProperties {
    lapin::BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_user_id(user.into())
        .with_reply_to(reply_to.clone())
        .with_correlation_id(command_id.into())
        .with_message_id(command_id.into())
}

/// Publishes a command the way the engine expects it (events/README.md, "The message
/// contract"): persistent JSON to the commands exchange, `user_id` = the connection's user,
/// replies to `reply_to`, `correlation_id` and `message_id` = the command id. Await the
/// returned confirm before forgetting the command.
pub async fn publish_command(
    channel: &lapin::Channel,
    bus: &BusConfig,
    user: &str,
    reply_to: &lapin::types::ShortString,
    envelope: &crate::command::CommandEnvelope,
) -> lapin::Result<lapin::PublisherConfirm> {
    let body = serde_json::to_vec(envelope).expect("commands serialize");
    let props = command_properties(user, reply_to, &envelope.command_id);
    let options = lapin::options::BasicPublishOptions::default();
    channel.basic_publish(bus.commands_exchange().as_str().into(), topology::COMMAND_ROUTING_KEY.into(), options, &body, props).await
}

/// `publish_command` to another exchange and routing key (a sharded deployment's route or
/// one-off exchange, `shards::route`), mandatory: a command no queue takes comes back in its
/// confirm (`Confirmation::Ack(Some(returned))`) instead of being dropped.
pub async fn publish_command_routed(
    channel: &lapin::Channel,
    route: &shards::Route,
    user: &str,
    reply_to: &lapin::types::ShortString,
    envelope: &crate::command::CommandEnvelope,
) -> lapin::Result<lapin::PublisherConfirm> {
    let body = serde_json::to_vec(envelope).expect("commands serialize");
    let props = command_properties(user, reply_to, &envelope.command_id);
    let options = lapin::options::BasicPublishOptions { mandatory: true, ..lapin::options::BasicPublishOptions::default() };
    channel.basic_publish(route.exchange.as_str().into(), route.routing_key.as_str().into(), options, &body, props).await
}

/// Why a broker session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The broker went away, closed the connection or refused an operation: reconnect.
    #[error("{0}")]
    Broker(String),
    /// Reconnecting cannot help (a topology conflict, the writer thread gone): serve stops.
    #[error("{0}")]
    Fatal(String),
}

impl From<lapin::Error> for SessionError {
    fn from(e: lapin::Error) -> SessionError {
        SessionError::Broker(e.to_string())
    }
}

impl From<IntakeError> for SessionError {
    fn from(e: IntakeError) -> SessionError {
        match e {
            IntakeError::Amqp(e) => SessionError::Broker(format!("intake: {e}")),
            IntakeError::Writer(why) => SessionError::Fatal(format!("the writer stopped ({why}); restart serve: it reopens the engine from the log")),
        }
    }
}

/// What `serve` reports to the outside (readiness, metrics).
pub struct Hooks {
    pub on_group: OnGroup,
    pub on_published: Box<dyn Fn(u64) + Send + Sync>,
    pub intake: Box<dyn IntakeObserver>,
    /// True while connected to the broker with the topology declared.
    pub connected: Arc<AtomicBool>,
}

/// The name serve's broker connection carries (client property `connection_name`), so that
/// operators tell it apart in the management UI and `rabbitmqctl list_connections`.
pub fn connection_name(bus: &BusConfig) -> String {
    format!("ansinh-serve/{}", bus.prefix)
}

/// Runs `engine` against the broker until `shutdown`. `storage` is the slot of read handles
/// on the engine's data dir (made with `Storage::new(&engine)`), shared with the HTTP API.
pub async fn serve(
    bus: BusConfig,
    group_max: usize,
    mut engine: Engine,
    storage: Storage,
    hooks: Hooks,
    shutdown: watch::Receiver<bool>,
    national: Option<shards::National>,
) -> Result<(), String> {
    bus.validate()?;
    engine.set_roles(bus.roles());
    if bus.users.is_empty() {
        tracing::warn!("bus.users is empty: every command will be refused as unauthorized; see config/ansinh.toml");
    }
    let appended = Arc::new(Notify::new());
    let (writer, thread) = Writer::spawn(engine, storage.clone(), appended.clone(), hooks.on_group);
    let mut backoff = Duration::from_millis(100);
    let mut fatal = None;
    let max_backoff = Duration::from_millis(bus.reconnect_backoff_max_ms.max(100));
    loop {
        if *shutdown.borrow() {
            break;
        }
        let parts = Parts {
            bus: &bus,
            national: national.as_ref(),
            group_max,
            writer: &writer,
            observer: hooks.intake.as_ref(),
            storage: &storage,
            appended: &appended,
            on_published: hooks.on_published.as_ref(),
        };
        let result = session(&parts, &hooks.connected, &mut backoff, shutdown.clone()).await;
        hooks.connected.store(false, Ordering::SeqCst);
        match result {
            Ok(()) => break,
            Err(SessionError::Fatal(why)) => {
                tracing::error!(error = %crate::domain::citizen_id::log_safe_error(&why), "serve cannot go on");
                fatal = Some(why);
                break;
            }
            Err(SessionError::Broker(e)) => {
                tracing::warn!(error = %crate::domain::citizen_id::log_safe_error(&e), retry_in_ms = backoff.as_millis() as u64, "broker session ended; reconnecting");
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
    drop(writer);
    let joined = tokio::task::spawn_blocking(move || thread.join()).await.map_err(|e| e.to_string())?;
    if let Some(why) = fatal {
        return Err(why);
    }
    joined.map_err(|_| "the writer thread panicked".to_string())?;
    tracing::info!("stopped: every acknowledged command is durable");
    Ok(())
}

/// What a broker session works with; outlives every session.
struct Parts<'a> {
    bus: &'a BusConfig,
    /// Sharded: the national topology is declared with the shard's own (`shards::declare`).
    national: Option<&'a shards::National>,
    group_max: usize,
    writer: &'a Writer,
    observer: &'a dyn IntakeObserver,
    storage: &'a Storage,
    appended: &'a Arc<Notify>,
    on_published: &'a (dyn Fn(u64) + Send + Sync),
}

async fn session(parts: &Parts<'_>, connected: &AtomicBool, backoff: &mut Duration, shutdown: watch::Receiver<bool>) -> Result<(), SessionError> {
    let bus = parts.bus;
    let properties = ConnectionProperties::default().with_connection_name(connection_name(bus).into());
    let connection = Connection::connect(&bus.amqp_url, properties)
        .await
        .map_err(|e| SessionError::Broker(format!("connecting to {}: {e}", config::redact(&bus.amqp_url))))?;
    let setup = connection.create_channel().await?;
    let fatal_or_retry = |e: topology::TopologyError| match e {
        topology::TopologyError::Conflict { .. } | topology::TopologyError::PluginMissing { .. } => SessionError::Fatal(format!("declaring the topology: {e}")),
        e => SessionError::Broker(format!("declaring the topology: {e}")),
    };
    topology::declare(&setup, bus).await.map_err(fatal_or_retry)?;
    if let Some(national) = parts.national {
        shards::declare(&setup, bus, national).await.map_err(fatal_or_retry)?;
    }
    let consume = connection.create_channel().await?;
    consume.basic_qos(bus.prefetch, BasicQosOptions::default()).await?;
    let publish = connection.create_channel().await?;
    publish.confirm_select(ConfirmSelectOptions::default()).await?;
    let isolated_channel = connection.create_channel().await?;
    isolated_channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let relay_channel = connection.create_channel().await?;
    relay_channel.confirm_select(ConfirmSelectOptions::default()).await?;
    connected.store(true, Ordering::SeqCst);
    *backoff = Duration::from_millis(100);
    tracing::info!(broker = %config::redact(&bus.amqp_url), queue = %bus.commands_queue(), isolated = %bus.isolated_queue(), "connected; consuming");

    let intake = Intake {
        config: bus,
        consume: &consume,
        publish: &publish,
        writer: parts.writer,
        storage: parts.storage,
        group_max: parts.group_max,
        observer: parts.observer,
    };
    let isolated = Isolated { config: bus, channel: &isolated_channel, writer: parts.writer, storage: parts.storage, observer: parts.observer };
    let relay =
        Relay { config: bus, channel: &relay_channel, storage: parts.storage.clone(), appended: parts.appended.clone(), on_published: parts.on_published };
    let consuming = async { intake.run(shutdown.clone()).await.map_err(SessionError::from) };
    let isolating = async { isolated.run(shutdown.clone()).await.map_err(SessionError::from) };
    let relaying = async { relay.run(shutdown.clone()).await.map_err(|e| SessionError::Broker(format!("relay: {e}"))) };
    tokio::try_join!(consuming, isolating, relaying)?;
    let _ = connection.close(200, "shutdown".into()).await;
    Ok(())
}
