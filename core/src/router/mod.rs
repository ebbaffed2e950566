//! Routing: the lanes between plugin threads and the rest of tolk. (The route graph and the
//! Realtime sessions arrive with the routing issue; the lane is the piece plugins touch.)

pub mod lane;
