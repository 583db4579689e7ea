//! The functional core: decision state, `decide`, `evolve`, rejection codes. No I/O here.

pub mod authz;
pub mod decide;
pub mod rejection;
pub mod state;
pub mod vecmap;

pub use decide::decide;
pub use rejection::{Rejection, CODES};
pub use state::{Limits, PayoutStatus, State};
