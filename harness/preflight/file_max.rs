//! The **file_max** check: fs.file-max minus the files open now, against the descriptors
//! the run adds on this machine (client sockets, and server sockets when the target is
//! local).

use super::check::{Check, CheckName, Side, Verdict};
use super::context::Ctx;
use super::numbers::count;
use crate::descriptors;

impl Ctx<'_> {
    pub(super) fn file_max(&self) -> Check {
        let mut check = Check::new(CheckName::FileMax, Side::Client);
        let (Some(file_max), Some(open)) = (self.env.limits.file_max, self.env.files_open) else {
            return check.judged(Verdict::Skipped, "fs.file-max or fs.file-nr could not be read".into(), None);
        };
        let per_connection = self.sockets_per_connection();
        let reserve = descriptors::RESERVE * (self.workers + self.target_workers);
        let adds = self.peak * per_connection + reserve;
        let free = file_max.saturating_sub(open);
        check
            .figures
            .add("file_max", Some(file_max))
            .add("files_open", Some(open))
            .add("files_free", Some(free))
            .add("files_needed", Some(adds))
            .add("files_per_connection", Some(per_connection));
        let gives_at = free.saturating_sub(reserve) / per_connection;
        check.gives_at = Some(gives_at);
        let sides = if per_connection == 2 { " (client and server side: the target is local)" } else { "" };
        let summary = format!(
            "the run adds {} open files{sides}; fs.file-max {} with {} open now leaves {}",
            count(adds),
            count(file_max),
            count(open),
            count(free)
        );
        if adds <= free {
            return check.judged(Verdict::Fits, summary, None);
        }
        // Leave a tenth more than the run needs, in round thousands.
        let wanted = (open + adds + adds / 10).div_ceil(1000) * 1000;
        let fix = format!(
            "`sysctl -w fs.file-max={wanted}` (and a file in /etc/sysctl.d to keep it), or lower the connect counts to at most {}",
            count(gives_at)
        );
        if self.env.privileged {
            // The kernel lets CAP_SYS_ADMIN pass fs.file-max (alloc_empty_file).
            let summary = format!(
                "{summary}: root may pass fs.file-max, but every other process on the machine then fails to open files (ENFILE)"
            );
            return check.judged(Verdict::Warning, summary, Some(fix));
        }
        check.judged(
            Verdict::Blocks,
            format!("{summary}: past {} connections, sockets fail with ENFILE", count(gives_at)),
            Some(fix),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::Ctx;
    use super::super::environment::Environment;
    use super::super::testing::{connect, env, plan, LOCAL};
    use super::*;

    #[test]
    fn file_max_blocks_unless_root() {
        let plan = plan(LOCAL, &connect(50_000, 10_000));
        let e = Environment { limits: probe::Limits { file_max: Some(100_000), ..env(&plan).limits }, ..env(&plan) };
        let e = Environment { files_open: Some(20_000), ..e };
        let files = Ctx::new(&plan, &e).file_max();
        assert_eq!(files.verdict, Verdict::Blocks);
        // 80,000 free, 300 kept for the 3 workers, 2 files per loopback connection
        assert_eq!(files.gives_at, Some(39_850));
        assert!(files.fix.as_deref().unwrap().contains("sysctl -w fs.file-max=131000"), "{files:?}");
        let root = Environment { privileged: true, ..e };
        assert_eq!(Ctx::new(&plan, &root).file_max().verdict, Verdict::Warning);
    }
}
