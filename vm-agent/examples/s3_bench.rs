//! Single-stream throughput of the agent's S3 client against a store, for
//! bench/s3-client.sh (which starts a real one-node Ceph RADOS Gateway):
//! for each object size, PUT then GET about `total` bytes as objects of
//! that size, and print MiB/s and requests/s. Every object read back is
//! compared with what was written.
//!
//!   s3_bench ENDPOINT BUCKET REGION TOTAL_MIB SIZE_KIB…   (keys: AWS_* env)

use sparsebak_agent::s3::creds::{find, ProcessEnv};
use sparsebak_agent::s3::{Client, Config};
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!("usage: s3_bench ENDPOINT BUCKET REGION TOTAL_MIB SIZE_KIB...");
        std::process::exit(2);
    }
    let creds = find(None, &ProcessEnv).unwrap_or_else(|e| panic!("{e}"));
    let c = Client::new(Config::new(&a[1], &a[2], &a[3]), creds).unwrap();
    let total: usize = a[4].parse::<usize>().unwrap() << 20;
    println!("size_kib,objects,put_mib_s,put_req_s,get_mib_s,get_req_s");
    for kib in &a[5..] {
        let size = kib.parse::<usize>().unwrap() << 10;
        let n = (total / size).max(1);
        let data: Vec<u8> = (0..size)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
            .collect();
        let keys: Vec<String> = (0..n).map(|i| format!("bench/{kib}/{i}")).collect();
        let t = Instant::now();
        for k in &keys {
            c.put(k, &data).unwrap();
        }
        let put = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for k in &keys {
            let back = c.get(k, size as u64).unwrap().expect("written");
            assert!(back == data, "{k} reads back different bytes");
        }
        let get = t.elapsed().as_secs_f64();
        for k in &keys {
            c.delete(k).unwrap();
        }
        let mib = (n * size) as f64 / (1 << 20) as f64;
        println!(
            "{kib},{n},{:.0},{:.0},{:.0},{:.0}",
            mib / put,
            n as f64 / put,
            mib / get,
            n as f64 / get
        );
    }
}
