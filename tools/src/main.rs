fn main() { eprintln!("tools: not implemented yet (issue 4)"); std::process::exit(2); }
