// SAFETY: `#[repr(C)]`, only integer fields, explicit padding, no pointers.
unsafe impl aya::Pod for super::CpuState {}
