//! Progress bars on a terminal (indicatif), silence elsewhere (CI, pipes, make -j logs).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// Whether to draw progress bars: stderr is a terminal and `CI` is not set.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A bar of `total` steps, hidden when not interactive.
pub fn bar(total: u64, message: &str) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(message.to_string());
    pb
}
