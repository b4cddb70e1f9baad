//! Blocks in a real S3-compatible server (moto, from PyPI): flushed blocks land in the
//! bucket, and after a SIGKILL the node comes back from its Raft snapshot and log with the
//! blocks read from S3. Skipped with a note when `moto_server` is not installed (`.ci/test`
//! installs it and names it in `FIRN_TEST_MOTO_SERVER`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{CPU, Server, free_port, get, wait_until};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn blocks_live_in_s3_and_survive_a_restart() {
    let moto_server =
        std::env::var("FIRN_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = free_port();
    let Ok(child) = Command::new(&moto_server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        eprintln!("skipped: no {moto_server} (bash .ci/test installs moto[server])");
        return;
    };
    let _moto = Moto(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    assert!(
        wait_until(Duration::from_secs(30), || ureq::put(&format!(
            "{endpoint}/firn-blocks"
        ))
        .call()
        .is_ok()),
        "moto answers and the bucket is created"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_with_env(
        dir.path(),
        &[
            "--object-store",
            "s3://firn-blocks/prod",
            "--s3-endpoint",
            &endpoint,
            "--flush-interval-secs",
            "1",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    for n in 0..20 {
        let (status, body) = server.ingest_folded("s3app.cpu", &format!("main;s3;f{n} 2\n"));
        assert_eq!(status, 200, "{body}");
    }
    let listing = || get(&format!("{endpoint}/firn-blocks?list-type=2&prefix=prod/")).1;
    assert!(
        wait_until(Duration::from_secs(30), || listing()
            .contains("samples.parquet")),
        "a block is in the bucket: {}",
        listing()
    );
    assert!(
        !listing().contains("symbols.bin"),
        "one object per block: the symbols ride in it"
    );

    server.kill_and_restart();
    let (status, folded) = server.merge(&format!("{CPU}{{service_name=\"s3app\"}}"), "folded");
    assert_eq!(status, 200, "{folded}");
    assert_eq!(folded.lines().count(), 20, "{folded}");

    // The blocks read came from S3 once, into the local cache; the same query again reads
    // them from disk.
    let misses = crate::harness::metric(&server, "firn_disk_cache_misses_total");
    assert!(misses > 0, "block objects were downloaded into the cache");
    assert!(crate::harness::metric(&server, "firn_disk_cache_bytes") > 0);
    let (_, again) = server.merge(&format!("{CPU}{{service_name=\"s3app\"}}"), "folded");
    assert_eq!(again, folded);
    assert_eq!(
        crate::harness::metric(&server, "firn_disk_cache_misses_total"),
        misses,
        "nothing downloaded again"
    );
    assert!(crate::harness::metric(&server, "firn_disk_cache_hits_total") > 0);
}
