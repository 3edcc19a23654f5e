// SAFETY: `#[repr(C)]`, only integer fields, explicit padding, no pointers.
unsafe impl aya::Pod for super::CgroupTime {}
// SAFETY: as above.
unsafe impl aya::Pod for super::TickRecord {}
// SAFETY: as above.
unsafe impl aya::Pod for super::RqLayout {}
