//! A private PostgreSQL cluster, for tests that need a server configured
//! otherwise than the machine's (TLS, a standby): `initdb` into a temporary
//! directory, started by `pg_ctl` on a spare port, stopped and removed on
//! drop. PostgreSQL refuses to run as root, so when the tests do, its
//! programs run as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::free_port;

pub struct PostgresCluster {
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

/// Files placed in the data directory before start, readable by the
/// server only (a key must be).
pub struct ClusterFile<'a> {
    pub name: &'a str,
    pub contents: &'a str,
}

impl PostgresCluster {
    /// Creates the cluster with `settings` appended to `postgresql.conf`,
    /// `hba` as its whole `pg_hba.conf`, and `files` in its directory, and
    /// starts it.
    pub fn start(settings: &str, hba: &str, files: &[ClusterFile<'_>]) -> anyhow::Result<Self> {
        let bin = PathBuf::from(
            String::from_utf8(
                Command::new("pg_config")
                    .arg("--bindir")
                    .output()
                    .context("pg_config (PostgreSQL's server package) must be installed")?
                    .stdout,
            )?
            .trim(),
        );
        let root = String::from_utf8(Command::new("id").arg("-u").output()?.stdout)?.trim() == "0";
        let dir = std::env::temp_dir().join(format!("azora_pg_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let cluster = Self {
            port: free_port(),
            dir,
            bin,
            as_postgres: root,
        };
        if root {
            run(Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&cluster.dir))?;
        }
        run(cluster
            .command("initdb")
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(&cluster.dir))?;
        for file in files {
            let path = cluster.dir.join(file.name);
            std::fs::write(&path, file.contents)?;
            cluster.own_privately(&path)?;
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(cluster.dir.join("postgresql.conf"))?;
        use std::io::Write;
        writeln!(
            conf,
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n{settings}",
            cluster.port,
            cluster.dir.display()
        )?;
        std::fs::write(cluster.dir.join("pg_hba.conf"), hba)?;
        cluster.own_privately(&cluster.dir.join("pg_hba.conf"))?;
        run(cluster
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-D"])
            .arg(&cluster.dir)
            .arg("-l")
            .arg(cluster.dir.join("server.log"))
            .arg("start"))
        .with_context(|| cluster.log())?;
        Ok(cluster)
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn own_privately(&self, path: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        if self.as_postgres {
            run(Command::new("chown").args(["postgres:postgres"]).arg(path))?;
        }
        Ok(())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-m", "immediate", "-D"])
            .arg(&self.dir)
            .arg("stop")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
