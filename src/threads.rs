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

/// Runs `job` on one of rayon's worker threads (the calling thread waits for it).
///
/// A command run on the main thread hands every parallel operation to rayon's two workers
/// and sleeps until they finish; between operations the workers sleep while it runs the
/// serial work. Each hand-off then waits for a sleeping thread to wake, and on a virtual
/// machine a halted core takes long to wake: `perf` of a kakusan-mini UNet training step
/// on the 2-core Xeon found one core idle in 47 % of its samples (the other running a
/// matrix product's share or the main thread's serial work) and both idle in 6 %. On a
/// worker, the command's own thread takes part in every parallel operation it starts
/// and a late partner's share is done by whichever thread is free.
pub fn on_worker_thread<R: Send>(job: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| job())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_runs_on_one_of_rayons_workers_and_returns_its_value() {
        assert_eq!(rayon::current_thread_index(), None, "the test's own thread");
        let (index, sum) = on_worker_thread(|| {
            let sum: u64 = rayon::iter::ParallelIterator::sum(
                rayon::iter::IntoParallelIterator::into_par_iter(1..=1000u64),
            );
            (rayon::current_thread_index(), sum)
        });
        assert!(index.is_some(), "the job ran outside rayon's pool");
        assert_eq!(sum, 500_500);
    }
}
