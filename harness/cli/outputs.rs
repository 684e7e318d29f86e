//! The report files a command writes besides its text (`--json`, `--junit`, `--html`),
//! shared by `run` and `merge`. [`ReportFiles::check`] refuses bad paths before the
//! work (exit 2): two outputs naming one file, an output that is an input (the
//! scenario, a merge input), a directory or a block device, a missing directory. `-`
//! is standard output for one of them; the text then goes to standard error. Each
//! file is written to what its path names ([`crate::report::write`]), and every one
//! is attempted even when one fails.

use std::path::Path;
use std::path::PathBuf;

use super::console::Console;
use super::failure::Failure;
use crate::report::write::{Destination, Identity};
use crate::report::{self, RunReport};

#[derive(Debug, clap::Args)]
pub struct ReportFiles {
    /// Also write the report as JSON (schema sockcap.report/1) to this file ("-": stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the expectations as JUnit XML (a test suite per phase) to this file ("-": stdout).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page with charts to this file ("-": stdout).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// The path that means standard output.
const STDOUT: &str = "-";

fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == STDOUT
}

impl ReportFiles {
    fn each(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [("--json", &self.json), ("--junit", &self.junit), ("--html", &self.html)]
            .into_iter()
            .filter_map(|(flag, path)| path.as_deref().map(|p| (flag, p)))
    }

    /// The output that goes to standard output (`-`), if one does.
    fn on_stdout(&self) -> Option<&'static str> {
        self.each().find(|(_, path)| is_stdout(path)).map(|(flag, _)| flag)
    }

    /// Before the work: every output can be written where it says, no two share a
    /// file or standard output, and none is one of `inputs` (what each is, its path).
    pub fn check(&self, inputs: &[(&str, &Path)]) -> Result<(), Failure> {
        let refuse = |why: String| Err(Failure::bad_input(anyhow::anyhow!(why)));
        let mut seen: Vec<(&str, &Path, Identity)> = Vec::new();
        let mut on_stdout: Option<&str> = None;
        for (flag, path) in self.each() {
            if is_stdout(path) {
                if let Some(first) = on_stdout {
                    return refuse(format!(
                        "{first} - and {flag} -: only one output can go to standard output; give the other a file"
                    ));
                }
                on_stdout = Some(flag);
                continue;
            }
            if let Err(e) = Destination::of(path) {
                return refuse(format!("{flag}: {:#}", anyhow::Error::new(e)));
            }
            let id = Identity::of(path);
            if let Some((first, first_path, _)) = seen.iter().find(|(_, _, other)| *other == id) {
                return refuse(format!(
                    "{first} {} and {flag} {} name the same file; give each output its own file",
                    first_path.display(),
                    path.display()
                ));
            }
            if let Some((what, input)) = inputs.iter().find(|(_, input)| Identity::of(input) == id) {
                return refuse(format!(
                    "{flag} {} is {what} {}; writing the report there would replace it: give the report another name",
                    path.display(),
                    input.display()
                ));
            }
            seen.push((flag, path, id));
        }
        Ok(())
    }

    /// Refuse `flag` (which prints on standard output) when an output takes it.
    pub fn leave_stdout_to(&self, flag: &str) -> Result<(), Failure> {
        match self.on_stdout() {
            Some(output) => Err(Failure::bad_input(anyhow::anyhow!(
                "{output} - and {flag} both print on standard output; give {output} a file"
            ))),
            None => Ok(()),
        }
    }

    /// Where the command's text goes: standard output, or standard error when a
    /// report takes standard output (`--json -`).
    pub fn text_console(&self) -> Console {
        if self.on_stdout().is_some() {
            Console::stderr()
        } else {
            Console::stdout()
        }
    }

    /// Write every output asked for; try each even when one fails (each is what was
    /// measured), then name those that could not be written (exit 3). The one on
    /// standard output (`-`) goes through `stdout`.
    pub fn write(&self, report: &RunReport) -> Result<(), Failure> {
        let mut stdout = Console::stdout();
        let mut unwritten: Vec<String> = Vec::new();
        for (flag, path) in self.each() {
            let written = if is_stdout(path) {
                rendered(flag, report).and_then(|bytes| stdout.write(&bytes).map_err(|f| f.error))
            } else {
                match flag {
                    "--json" => report::json::write(report, path),
                    "--junit" => report::junit::write(report, path).map_err(anyhow::Error::new),
                    _ => report::html::write(report, path),
                }
            };
            if let Err(e) = written {
                unwritten.push(format!("{flag}: {e:#}"));
            }
        }
        if unwritten.is_empty() {
            Ok(())
        } else {
            Err(Failure::environment(anyhow::anyhow!("{}", unwritten.join("\n"))))
        }
    }
}

/// The output `flag` asks for, as bytes (for standard output).
fn rendered(flag: &str, report: &RunReport) -> anyhow::Result<Vec<u8>> {
    Ok(match flag {
        "--json" => {
            let mut bytes = Vec::new();
            report::json::to_writer(report, &mut bytes)?;
            bytes
        }
        "--junit" => report::junit::render(report).into_bytes(),
        _ => report::html::render(report).into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sockcap-outputs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn files(json: Option<PathBuf>, junit: Option<PathBuf>, html: Option<PathBuf>) -> ReportFiles {
        ReportFiles { json, junit, html }
    }

    fn refusal(files: &ReportFiles, inputs: &[(&str, &Path)]) -> String {
        let failure = files.check(inputs).expect_err("refused");
        assert_eq!(failure.code, super::super::failure::exit::BAD_INPUT);
        format!("{:#}", failure.error)
    }

    #[test]
    fn distinct_files_pass() {
        let dir = scratch("ok");
        let f = files(Some(dir.join("r.json")), Some(dir.join("r.xml")), Some("-".into()));
        f.check(&[("the scenario file", &dir.join("s.toml"))]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_file_under_two_names_is_refused() {
        let dir = scratch("same");
        // Not there yet: the same path spelt two ways.
        let spelt = dir.join(".").join("r.json");
        let why = refusal(&files(Some(dir.join("r.json")), None, Some(spelt)), &[]);
        assert!(why.contains("--json") && why.contains("--html") && why.contains("the same file"), "{why}");
        // There, and reached through a symlink.
        std::fs::write(dir.join("r.json"), "old").unwrap();
        std::os::unix::fs::symlink("r.json", dir.join("link")).unwrap();
        let why = refusal(&files(Some(dir.join("link")), Some(dir.join("r.json")), None), &[]);
        assert!(why.contains("the same file"), "{why}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_output_over_an_input_is_refused() {
        let dir = scratch("input");
        let scenario = dir.join("s.toml");
        std::fs::write(&scenario, "name = \"x\"").unwrap();
        let why = refusal(&files(None, Some(dir.join("./s.toml")), None), &[("the scenario file", &scenario)]);
        assert!(why.contains("--junit") && why.contains("is the scenario file"), "{why}");
        assert_eq!(std::fs::read_to_string(&scenario).unwrap(), "name = \"x\"");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn standard_output_takes_one_output() {
        let why = refusal(&files(Some("-".into()), None, Some("-".into())), &[]);
        assert!(why.contains("only one output can go to standard output"), "{why}");
        let f = files(None, Some("-".into()), None);
        let why = format!("{:#}", f.leave_stdout_to("--emit-report").unwrap_err().error);
        assert!(why.contains("--junit - and --emit-report"), "{why}");
        files(Some("r.json".into()), None, None).leave_stdout_to("--emit-report").unwrap();
    }

    #[test]
    fn a_directory_or_a_missing_directory_is_refused() {
        let why = refusal(&files(Some(std::env::temp_dir()), None, None), &[]);
        assert!(why.contains("--json") && why.contains("is a directory"), "{why}");
        let why = refusal(&files(None, None, Some("/nonexistent-sockcap-dir/r.html".into())), &[]);
        assert!(why.contains("/nonexistent-sockcap-dir") && why.contains("does not exist"), "{why}");
    }
}
