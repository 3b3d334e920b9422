//! Replicate your own application with Fleet: a running total kept by three replicas.
//!
//! Run it with `cargo run -p fleet-io-std --example replicated_total`. It starts three
//! replicas of `Total` on free 127.0.0.1 ports (threads of this process), adds to the total
//! through a blocking client, stops one replica, adds again (two of three still form a
//! quorum), and prints each reply.
//!
//! `Total` is the application: it lives in its own `no_std` crate
//! (`examples/total-app`, `fleet-example-total`) because the firmware example
//! (`examples/nucleo-f429zi`) replicates the very same type on an STM32 board. Your own
//! application takes its place: any type that implements `fleet_engine::rsl::app::App`.

use std::error::Error;
use std::time::Duration;

use fleet_example_total::Total;
use fleet_io_std::config::ClusterFile;
use fleet_io_std::rsl::{self, RslClient, ServeOptions};

fn main() -> Result<(), Box<dyn Error>> {
    // Three free ports; a real deployment writes its replicas' addresses in a file.
    let ports: Vec<u16> = (0..3)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    let replicas: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let setup = ClusterFile::parse(&format!("[rsl]\nreplicas = [{}]\n", replicas.join(", ")))?.rsl()?;

    // One replica per id; in production each runs in its own process on its own machine,
    // usually with `ServeOptions::data_dir` set (durable mode).
    let mut servers = Vec::new();
    for id in 0..3 {
        servers.push(rsl::spawn(&setup, id, Total::new(), &ServeOptions::default())?);
    }

    let mut client = RslClient::connect(&setup)?;
    let timeout = Duration::from_secs(5);
    for add in [5u64, 10, 27] {
        let reply = client.call(&Total::request(add), timeout)?;
        let total = Total::decode_reply(&reply).ok_or("a reply that is not a total")?;
        println!("added {add}: total {total}");
    }
    // A replica stops; the other two are a quorum and keep serving.
    if let Some(stopped) = servers.pop() {
        stopped.stop()?;
    }
    let reply = client.call(&Total::request(100), timeout)?;
    let total = Total::decode_reply(&reply).ok_or("a reply that is not a total")?;
    println!("added 100 with one replica stopped: total {total}");
    if total != 142 {
        return Err(format!("expected a total of 142, got {total}").into());
    }
    // An empty request is a query (`Total::is_query`): the leader answers it without a log write.
    let reply = client.call(&[], timeout)?;
    let read = Total::decode_reply(&reply).ok_or("a reply that is not a total")?;
    println!("read without adding: total {read}");
    if read != 142 {
        return Err(format!("expected to read 142, got {read}").into());
    }
    Ok(())
}
