//! The functional core: decision state, `decide`, `evolve`, rejection codes. No I/O here.

pub mod authz;
pub mod decide;
pub mod handles;
pub mod one_off;
pub mod payouts;
pub mod people;
pub mod rejection;
pub mod state;

pub use decide::decide;
pub use rejection::{Rejection, CODES};
pub use state::{Limits, PayoutStatus, State};
