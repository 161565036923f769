//! Line protocol encoding of the InfluxDB sink (placeholder, filled in below).
fn main() {}
