//! How many threads candle uses, decided once at startup.

/// Fixes candle's thread count for the whole run by setting `RAYON_NUM_THREADS` (unless the
/// user set it).
///
/// candle asks for its thread count on every matrix product and convolution; without
/// `RAYON_NUM_THREADS` each ask parses `/proc/cpuinfo` to count physical cores. In `perf`
/// that was 15-18 % of a UNet training step of kakusan-mini (file reads, `vsnprintf`,
/// `show_cpuinfo` in the kernel). The count is the same as candle's own default.
pub fn fix_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // Called first thing in main, before candle starts its thread pool or any other
        // thread exists.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// Runs candle's element-wise operations on the calling thread (matrix products keep all
/// cores), unless `CANDLE_NUM_THREADS` says otherwise.
///
/// candle parallelises element-wise work with spinning barriers. A training step issues
/// thousands of small element-wise operations, and on a 2-core machine with anything else
/// running, a spinning thread that waits for a descheduled partner burned 30-40 % of the
/// step in `perf`; one thread made a VAE step 28 % faster under load. Generation too: on
/// kakusan-mini `perf` put 26 % of `generate` in candle's barrier spin and 14 % in rayon's
/// idle threads; one thread gave 0.88 -> 0.77 s for a picture on a quiet machine and
/// 12.3 -> 8.0-8.8 s for four beside a training run, and left SD 1.5's UNet step and VAE
/// decode unchanged (14.2 / 20.1 s either way: their time is in the matrix products).
pub fn single_threaded_elementwise_ops() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Called first thing in main, before candle starts its thread pool or any other
        // thread exists.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
