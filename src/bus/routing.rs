//! Routing keys of published events: `<event type>.<qualifier>`, where the qualifier is the
//! bank BIN for payout events (a bank connector binds `payout.instructed.<its bin>`), the
//! province for beneficiary and budget events, and `all` otherwise.

use crate::event::Event;

pub fn routing_key(event: &Event) -> String {
    format!("{}.{}", event.data.type_name(), event.data.route_qualifier())
}
