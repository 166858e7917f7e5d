//! What touching memory costs after it was left alone for a while, on this machine:
//! fills 64 MiB, reads one word of each 4 KiB page in random order (twice, to warm
//! it), sleeps, and reads them again (twice). Prints nanoseconds per page for each
//! pass. On the virtual machines these benchmarks run on, the first pass after the
//! sleep costs microseconds per page, growing with the sleep (BENCHMARKS.md,
//! session 12), and that is what an engine pays for the pages it comes back to.
//!
//! ```sh
//! cargo run --release --example cold_pages -- 1000          # sleep 1,000 ms
//! cargo run --release --example cold_pages -- 5000 huge     # the buffer in transparent huge pages
//! ```

use std::time::{Duration, Instant};

/// The buffer's size.
const BYTES: usize = 64 << 20;
/// Words per 4 KiB page.
const WORDS_PER_PAGE: usize = 512;

fn main() {
    let sleep_ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let huge = std::env::args().nth(2).is_some_and(|a| a == "huge");
    let mut words: Vec<u64> = Vec::with_capacity(BYTES / 8 + WORDS_PER_PAGE * 512);
    if huge {
        advise_huge_pages(&mut words);
    }
    words.extend(0..(BYTES / 8) as u64);
    let order = shuffled_pages(BYTES / 8 / WORDS_PER_PAGE);
    read(&words, &order, "first touch after the fill");
    read(&words, &order, "again");
    std::thread::sleep(Duration::from_millis(sleep_ms));
    read(&words, &order, &format!("after {sleep_ms} ms untouched"));
    read(&words, &order, "again");
}

/// Reads one word of each page, in `order`; prints the time per page.
fn read(words: &[u64], order: &[usize], label: &str) {
    let t = Instant::now();
    let mut sum = 0u64;
    for &page in order {
        sum = sum.wrapping_add(words[page * WORDS_PER_PAGE + (page % 64) * 8]);
    }
    let per_page = t.elapsed().as_nanos() as f64 / order.len() as f64;
    println!(
        "{label}: {} pages, {per_page:.0} ns per page (checksum {sum})",
        order.len()
    );
}

/// The numbers `0..pages` in a random order (xorshift, a fixed seed).
fn shuffled_pages(pages: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pages).collect();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..pages).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        order.swap(i, (s % (i as u64 + 1)) as usize);
    }
    order
}

/// Asks for transparent huge pages on the buffer's 2 MiB-aligned part (Linux).
fn advise_huge_pages(words: &mut Vec<u64>) {
    #[cfg(target_os = "linux")]
    {
        let start = words.as_mut_ptr() as usize;
        let aligned = start.next_multiple_of(2 << 20);
        let len = (words.capacity() * 8 - (aligned - start)) / (2 << 20) * (2 << 20);
        // SAFETY: `[aligned, aligned + len)` lies inside the vector's allocation
        // (`aligned - start` plus `len` is at most its capacity in bytes), which this
        // function borrows mutably, and MADV_HUGEPAGE only changes how the kernel
        // backs those pages, never their contents or whether they are mapped.
        let r = unsafe {
            rustix::mm::madvise(aligned as *mut _, len, rustix::mm::Advice::LinuxHugepage)
        };
        println!("huge pages asked for {} MiB: {r:?}", len >> 20);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = words;
}
