//! Random number generators that reproduce PyTorch's CPU streams bit for bit.
//!
//! `torch.manual_seed(s); torch.randn(shape)` on CPU is what diffusers (with a CPU
//! `torch.Generator`) and ComfyUI draw their noise from, and what users expect a seed to
//! mean. [`TorchCpuGenerator`] reproduces it: the Mersenne Twister engine ([`Mt19937`]),
//! torch's uniform conversions, and its two normal algorithms (a Box–Muller per element
//! for tensors of fewer than 16 elements; a block-of-16 Box–Muller for larger ones whose
//! float32 form depends on the CPU build of torch, see [`CpuNormalKernel`]).

mod avx2_box_muller;
mod avx_math;
mod mt19937;
mod torch_cpu;

pub use mt19937::Mt19937;
pub use torch_cpu::{CpuNormalKernel, TorchCpuGenerator};
