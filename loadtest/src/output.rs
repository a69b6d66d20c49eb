//! Where a run writes besides stdout (`--hdr-out`, `--plot-dir`), checked
//! before the first request: a ten-minute run must not end in "cannot
//! write" and lose what it measured. The histogram goes to a temporary file
//! beside its destination, made now, and takes its name only once written,
//! so an earlier file of that name survives a failed run whole.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub struct Outputs {
    hdr_opt: Option<Pending>,
    plot_dir_opt: Option<PathBuf>,
}

/// A file being written: its temporary name, removed unless it is kept.
struct Pending {
    destination: PathBuf,
    temporary: PathBuf,
    file: File,
}

impl Outputs {
    /// Makes the plot folder (and its parents), and the histogram's
    /// temporary file: the run starts only if both can be written.
    pub fn prepare(hdr_opt: Option<&Path>, plot_dir_opt: Option<&Path>) -> Result<Outputs> {
        let hdr_opt = hdr_opt.map(Pending::start).transpose()?;
        if let Some(dir) = plot_dir_opt {
            std::fs::create_dir_all(dir)
                .map_err(|err| Error::usage(format!("--plot-dir {}: {err}", dir.display())))?;
            // Writable, not just present: a probe file, gone at once.
            let probe = Pending::start(&dir.join(".sluice-loadtest-probe"))
                .map_err(|err| Error::usage(format!("--plot-dir {}: {err}", dir.display())))?;
            drop(probe);
        }
        Ok(Outputs {
            hdr_opt,
            plot_dir_opt: plot_dir_opt.map(Path::to_path_buf),
        })
    }

    /// Writes the histogram under its name (a no-op without `--hdr-out`).
    pub fn write_hdr(&mut self, text: &str) -> Result<()> {
        match self.hdr_opt.take() {
            Some(pending) => pending.finish(text),
            None => Ok(()),
        }
    }

    pub fn plot_dir(&self) -> Option<&Path> {
        self.plot_dir_opt.as_deref()
    }
}

impl Pending {
    fn start(destination: &Path) -> Result<Pending> {
        let name = destination
            .file_name()
            .ok_or_else(|| Error::usage(format!("--hdr-out {}: not a file name", destination.display())))?;
        if destination.is_dir() {
            return Err(Error::usage(format!(
                "--hdr-out {}: is a folder, not a file",
                destination.display()
            )));
        }
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(name);
        temporary_name.push(format!(".{}.partial", std::process::id()));
        let temporary = destination.with_file_name(temporary_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .map_err(|err| Error::usage(format!("--hdr-out {}: {err}", destination.display())))?;
        Ok(Pending {
            destination: destination.to_path_buf(),
            temporary,
            file,
        })
    }

    fn finish(mut self, text: &str) -> Result<()> {
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_all())
            .and_then(|()| std::fs::rename(&self.temporary, &self.destination));
        written.map_err(|err| Error::Setup(format!("writing {}: {err}", self.destination.display())))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // After a rename this finds nothing, as it should.
        let _ = std::fs::remove_file(&self.temporary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_checked_before_the_run_and_written_whole() {
        let dir = std::env::temp_dir().join(format!("sluice-loadtest-output-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing/run.hgrm");
        let refusal = Outputs::prepare(Some(&missing), None).err().unwrap().to_string();
        assert!(
            refusal.starts_with("--hdr-out") && refusal.contains("run.hgrm"),
            "{refusal}"
        );
        let refusal = Outputs::prepare(Some(&dir), None).err().unwrap().to_string();
        assert!(refusal.contains("is a folder"), "{refusal}");

        // An earlier file keeps its bytes until the new one is whole.
        let hdr = dir.join("run.hgrm");
        std::fs::write(&hdr, "earlier").unwrap();
        let plots = dir.join("plots/today");
        let mut outputs = Outputs::prepare(Some(&hdr), Some(&plots)).unwrap();
        assert!(plots.is_dir());
        assert_eq!(std::fs::read_to_string(&hdr).unwrap(), "earlier");
        outputs.write_hdr("Value Percentile\n").unwrap();
        assert_eq!(std::fs::read_to_string(&hdr).unwrap(), "Value Percentile\n");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
        assert_eq!(std::fs::read_dir(&plots).unwrap().count(), 0, "the probe is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
