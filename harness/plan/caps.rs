//! The most a scenario may hold: every list and string read from a file is bounded, so
//! a scenario cannot make a run grow without limit (millions of phases once took one
//! run to 3.7 GB). Each cap is refused with exit 2, naming the file, the field and the
//! cap. The file's size is checked before it is read, and at most the cap is read.

use std::io::Read;
use std::path::Path;

use super::error::{Check, PlanError};
use crate::scenario::Scenario;

/// The largest scenario file read, bytes (1 MiB: hundreds of times the largest useful one).
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The most `[[phase]]`s a scenario may have.
pub const MAX_PHASES: usize = 1_000;
/// The longest scenario or phase name, characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The most client source addresses, ranges expanded (a scenario's `sources`, a phase's,
/// or `--sources`).
pub const MAX_SOURCES: usize = 65_536;
/// The most sysctls in `[netns] sysctl` or in one phase's `sysctl`.
pub const MAX_SYSCTLS: usize = 64;
/// The most expectations one phase may have.
pub const MAX_EXPECTATIONS: usize = 100;
/// The longest MQTT string (client id, username, password), bytes: MQTT writes a
/// string's length in two bytes.
pub const MAX_MQTT_STRING: usize = 65_535;

/// The scenario file's text, refused when it is larger than [`MAX_FILE_BYTES`] (checked
/// before reading, and bounded while reading: a FIFO or a device has no size to check).
pub(super) fn read_scenario(check: &Check, path: &Path) -> Result<String, PlanError> {
    let cannot = |e: std::io::Error| check.err("", format!("cannot read the scenario: {e}"));
    let too_large = |size: String| {
        check.err(
            "",
            format!(
                "the scenario file is {size}, more than the {} bytes (1 MiB) sockcap reads; a scenario this large \
                 is not one a person wrote: check the file",
                thousands(MAX_FILE_BYTES as usize)
            ),
        )
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if meta.is_file() && meta.len() > MAX_FILE_BYTES {
        return Err(too_large(format!("{} bytes", thousands(meta.len() as usize))));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large("larger".into()));
    }
    String::from_utf8(bytes).map_err(|e| {
        check.err(
            "",
            format!("the scenario is not UTF-8 text (byte {} is not): save it as UTF-8", e.utf8_error().valid_up_to()),
        )
    })
}

/// Every count and length of the raw scenario within its cap, before the plan is built.
pub(super) fn check_scenario(check: &Check, s: &Scenario) -> Result<(), PlanError> {
    check.at_most("phase", "[[phase]]s", s.phases.len(), MAX_PHASES, "split the scenario into several files")?;
    check.name("name", &s.name)?;
    if let Some(list) = &s.sources {
        check.at_most("sources", "items", list.len(), MAX_SOURCES, "write ranges (\"127.0.0.2-127.0.0.200\")")?;
    }
    if let Some(netns) = &s.netns {
        check.at_most(
            "netns.sysctl",
            "sysctls",
            netns.sysctl.len(),
            MAX_SYSCTLS,
            "set only the ones the test needs",
        )?;
    }
    if let Some(m) = &s.mqtt {
        if let Some(id) = &m.client_id {
            check.mqtt_string("mqtt.client_id", client_id_longest(id))?;
        }
        check.mqtt_string("mqtt.username", m.username.as_ref().map_or(0, String::len))?;
        check.mqtt_string("mqtt.password", m.password.as_ref().map_or(0, String::len))?;
    }
    for (i, p) in s.phases.iter().enumerate() {
        if let Some(name) = &p.name {
            check.name(&format!("phase[{i}].name"), name)?;
        }
        let fix = "split the phase, or check the ones that matter";
        check.at_most(&format!("phase[{i}].expect"), "expectations", p.expect.len(), MAX_EXPECTATIONS, fix)?;
        if let Some(map) = &p.sysctl {
            let fix = "set only the ones the test needs";
            check.at_most(&format!("phase[{i}].sysctl"), "sysctls", map.len(), MAX_SYSCTLS, fix)?;
        }
        if let Some(list) = &p.sources {
            let fix = "write ranges (\"127.0.0.2-127.0.0.200\")";
            check.at_most(&format!("phase[{i}].sources"), "items", list.len(), MAX_SOURCES, fix)?;
        }
    }
    Ok(())
}

/// The longest client id a template makes: `{n}` is a connection number (at most 20
/// digits), `{worker}` a worker index (at most 10).
fn client_id_longest(template: &str) -> usize {
    let (n, worker) = (template.matches("{n}").count(), template.matches("{worker}").count());
    template.len() - n * 3 - worker * 8 + n * 20 + worker * 10
}

impl Check<'_> {
    /// `n` things in `field`, at most `cap`.
    pub(super) fn at_most(&self, field: &str, what: &str, n: usize, cap: usize, fix: &str) -> Result<(), PlanError> {
        if n <= cap {
            return Ok(());
        }
        let message = format!("{} {what}, more than the {} sockcap accepts; {fix}", thousands(n), thousands(cap));
        Err(self.err(field, message))
    }

    fn name(&self, field: &str, name: &str) -> Result<(), PlanError> {
        let chars = name.chars().count();
        if chars <= MAX_NAME_CHARS {
            return Ok(());
        }
        let message =
            format!("the name is {} characters, more than the {MAX_NAME_CHARS} allowed; shorten it", thousands(chars));
        Err(self.err(field, message))
    }

    fn mqtt_string(&self, field: &str, bytes: usize) -> Result<(), PlanError> {
        if bytes <= MAX_MQTT_STRING {
            return Ok(());
        }
        let message = format!(
            "{} bytes (once {{n}} and {{worker}} are filled in), more than an MQTT string holds ({} bytes); shorten it",
            thousands(bytes),
            thousands(MAX_MQTT_STRING)
        );
        Err(self.err(field, message))
    }
}

/// A count or size as the messages write it (`1,048,576`).
fn thousands(n: usize) -> String {
    crate::printable::thousands(n as u64)
}

#[cfg(test)]
mod tests {
    use super::super::Plan;
    use super::*;

    /// The plan's error; a plan is not printed (some here hold 65,535-byte strings).
    fn load(text: &str) -> Result<(), PlanError> {
        Plan::from_toml(Path::new("s.toml"), text).map(|_| ())
    }

    const HEAD: &str = "name = \"t\"\ntarget = \"127.0.0.1:1883\"\nprotocol = \"mqtt\"\n";

    fn phases(n: usize) -> String {
        HEAD.to_string() + &"[[phase]]\nhold = \"1s\"\n".repeat(n)
    }

    #[test]
    fn phases_are_capped() {
        let plan = Plan::from_toml(Path::new("s.toml"), &phases(MAX_PHASES)).map_err(|e| e.to_string());
        assert_eq!(plan.map(|p| p.phases.len()), Ok(MAX_PHASES));
        let err = load(&phases(MAX_PHASES + 1)).unwrap_err();
        assert_eq!(err.field, "phase");
        assert!(err.to_string().contains("1,001 [[phase]]s, more than the 1,000"), "{err}");
    }

    #[test]
    fn names_are_capped_in_characters() {
        let name = "é".repeat(MAX_NAME_CHARS);
        assert!(load(&phases(1).replace("name = \"t\"", &format!("name = \"{name}\""))).is_ok());
        let err = load(&phases(1).replace("name = \"t\"", &format!("name = \"{name}x\""))).unwrap_err();
        assert_eq!((err.field.as_str(), err.message.contains("201 characters")), ("name", true), "{err}");
        let long = format!("{HEAD}[[phase]]\nname = \"{}\"\nhold = \"1s\"\n", "p".repeat(5000));
        assert_eq!(load(&long).unwrap_err().field, "phase[0].name");
    }

    #[test]
    fn expectations_and_sysctls_are_capped() {
        // The cap is checked before any expectation is parsed (these name no counter).
        let many: String = (0..=MAX_EXPECTATIONS).map(|i| format!("\"kernel.X{i}\" = \"== 0\"\n")).collect();
        let text = format!("{HEAD}[[phase]]\nhold = \"1s\"\n[phase.expect]\n{many}");
        let err = load(&text).unwrap_err();
        assert_eq!(err.field, "phase[0].expect", "{err}");
        assert!(err.message.contains("101 expectations, more than the 100"), "{err}");
        let sysctls: String = (0..=MAX_SYSCTLS).map(|i| format!("x{i} = 1\n")).collect();
        let text =
            HEAD.replace("127.0.0.1:1883", "embedded") + "[netns.sysctl]\n" + &sysctls + "[[phase]]\nhold = \"1s\"\n";
        let err = load(&text).unwrap_err();
        assert_eq!(err.field, "netns.sysctl", "{err}");
    }

    #[test]
    fn mqtt_strings_fit_an_mqtt_string() {
        let with =
            |key: &str, value: &str| load(&format!("{HEAD}[mqtt]\n{key} = \"{value}\"\n[[phase]]\nhold = \"1s\"\n"));
        assert!(with("username", &"u".repeat(MAX_MQTT_STRING)).is_ok());
        assert_eq!(with("username", &"u".repeat(MAX_MQTT_STRING + 1)).unwrap_err().field, "mqtt.username");
        assert_eq!(with("password", &"p".repeat(70_000)).unwrap_err().field, "mqtt.password");
        // A template that fits but whose filled-in ids would not.
        let id = "c".repeat(MAX_MQTT_STRING - 19) + "{n}";
        let err = with("client_id", &id).unwrap_err();
        assert!(err.field == "mqtt.client_id" && err.message.contains("65,535"), "{err}");
        assert!(with("client_id", &("c".repeat(MAX_MQTT_STRING - 20) + "{")).is_err());
        assert_eq!(client_id_longest("sockcap-{worker}-{n}"), 8 + 10 + 1 + 20);
    }

    #[test]
    fn sources_are_capped_after_ranges_are_expanded() {
        let text = |list: &str| format!("{HEAD}sources = [{list}]\n[[phase]]\nhold = \"1s\"\n");
        assert_eq!(load(&text("\"127.0.0.0-127.0.255.255\"")).map_err(|e| e.to_string()), Ok(()));
        let err = load(&text("\"127.0.0.0-127.0.255.255\", \"127.1.0.0-127.1.255.255\"")).unwrap_err();
        assert_eq!(err.field, "sources");
        assert!(err.message.contains("more than the 65,536"), "{err}");
    }

    #[test]
    fn the_file_size_is_checked_before_it_is_read() {
        let dir = std::env::temp_dir().join(format!("sockcap-caps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.toml");
        // Sparse: a 1 GiB file that takes no disk and is never read.
        std::fs::File::create(&big).unwrap().set_len(1 << 30).unwrap();
        let err = Plan::load(&big).unwrap_err();
        assert!(err.message.contains("1,073,741,824 bytes, more than the 1,048,576"), "{err}");
        let err = Plan::load(Path::new("/dev/zero")).unwrap_err();
        assert!(err.message.contains("more than the 1,048,576 bytes"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(thousands(1_048_576), "1,048,576");
        assert_eq!(thousands(999), "999");
    }
}
