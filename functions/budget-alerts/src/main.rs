//! Placeholder: the budget-alerts Lambda (issue 5) is being written.
fn main() {
    eprintln!("budget-alerts: not implemented yet");
    std::process::exit(1);
}
