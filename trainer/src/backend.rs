//! Backend choice: CUDA when the `cuda` feature is built and a device answers, else flex (CPU).

/// The CPU training backend.
pub type Cpu = burn::backend::Autodiff<burn::backend::Flex>;
/// The CPU device.
pub type CpuDevice = burn::backend::flex::FlexDevice;

/// The CUDA training backend.
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Autodiff<burn::backend::Cuda>;

/// True when CUDA device 0 runs a tiny op. burn panics (in a device thread, then in the caller)
/// when libcuda is missing; the panic is caught and the panic messages are silenced.
#[cfg(feature = "cuda")]
pub fn cuda_available() -> bool {
    use burn::tensor::Tensor;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(|| {
        let dev = burn::backend::cuda::CudaDevice::default();
        let _ = Tensor::<burn::backend::Cuda, 1>::from_floats([1.0, 2.0], &dev)
            .sum()
            .into_scalar();
    })
    .is_ok();
    std::panic::set_hook(hook);
    ok
}

/// Without the `cuda` feature there is never a CUDA device.
#[cfg(not(feature = "cuda"))]
pub fn cuda_available() -> bool {
    false
}

/// Number of rayon threads flex will use.
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
