//! Placeholder: the Kinesis ingest Lambda (issue 8) is being written.
fn main() {
    eprintln!("kinesis-ingest: not implemented yet");
    std::process::exit(1);
}
