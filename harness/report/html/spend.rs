//! The page's spend table: per phase, what the target's processes spent (RSS, per
//! connection, CPU), the connections' kernel memory on each side, sockcap's own CPU,
//! lateness and ports, and whether the phase was invalid (the generator the bottleneck).

use std::fmt::Write as _;

use crate::report::format::{micros, thousands};
use crate::report::markup::Escaped;
use crate::report::spend::{bytes, KERNEL_MEMORY_CLIENT, KERNEL_MEMORY_SERVER, SOCKCAP_CPU, TARGET};
use crate::report::{RunReport, SideMemory};

pub(super) fn section(out: &mut String, r: &RunReport) {
    if r.phases.iter().all(|p| p.target.is_none() && p.generator.is_none()) {
        return;
    }
    out.push_str(
        "<section id=\"spend\"><h2>What it cost</h2>\n\
         <p class=\"hint\">The target's processes (found from its listening socket): RSS when the phase ended, \
         RSS per connection held, CPU over the phase as % of one core. Kernel memory: the connections' buffers \
         and socket objects, each side. sockcap: its CPU as % of its cores, its schedule's lateness and its ports; \
         a phase where sockcap was the bottleneck is invalid.</p>\n\
         <div class=\"scroll\"><table class=\"num\">\n\
         <thead><tr><th class=\"l\">phase</th><th>target RSS</th><th>per conn</th><th>target CPU</th>\
         <th>kmem client</th><th>kmem server</th><th>sockcap CPU</th><th>lateness p99</th><th>ports</th>\
         <th class=\"l\">validity</th></tr></thead>\n<tbody>\n",
    );
    for p in &r.phases {
        let missing = |figure: &str, cols: usize| match p.unobserved.get(figure) {
            Some(why) => format!("<td colspan=\"{cols}\" class=\"bad\" title=\"{}\">unobserved</td>", Escaped(why)),
            None => format!("<td colspan=\"{cols}\">–</td>"),
        };
        let target = match &p.target {
            Some(t) => format!(
                "<td>{}</td><td>{}</td><td>{:.1}%</td>",
                bytes(t.rss_bytes),
                t.rss_per_conn_bytes.map_or("–".to_string(), bytes),
                t.cpu_percent
            ),
            None => missing(TARGET, 3),
        };
        let side = |m: &Option<SideMemory>, figure: &str| match m {
            Some(m) => format!("<td>{}</td>", bytes(m.bytes)),
            None => missing(figure, 1),
        };
        let generator = match &p.generator {
            Some(g) => format!(
                "<td>{:.1}% of {}</td><td>{}</td><td>{} / {}</td>",
                g.cpu_percent,
                g.cores,
                if p.latency_us.lateness.count > 0 { micros(p.latency_us.lateness.p99) } else { "–".into() },
                thousands(g.ports_in_use),
                thousands(g.port_budget)
            ),
            None => missing(SOCKCAP_CPU, 3),
        };
        let validity = match &p.invalid {
            Some(why) => format!("<td class=\"l bad\">INVALID: {}</td>", Escaped(why)),
            None => "<td class=\"l\">valid</td>".to_string(),
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td>{target}{}{}{generator}{validity}</tr>",
            Escaped(&p.name),
            side(&p.kernel_memory.client, KERNEL_MEMORY_CLIENT),
            side(&p.kernel_memory.server, KERNEL_MEMORY_SERVER),
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::sample_report;

    #[test]
    fn spend_rows_show_readings_reasons_and_validity() {
        let mut report = sample_report();
        assert!(crate::report::html::render(&report).find("id=\"spend\"").is_none(), "no spend, no section");
        report.phases[0].target = Some(crate::report::TargetSpend {
            processes: 1,
            rss_bytes: 3 << 20,
            connections: 300,
            rss_per_conn_bytes: Some(10_485),
            cpu_percent: 7.25,
            ..Default::default()
        });
        report.phases[0].generator =
            Some(crate::report::GeneratorSpend { cpu_percent: 95.0, cores: 2, ..Default::default() });
        report.phases[0].invalid = Some("the generator was the bottleneck: <cpu>".into());
        report.phases[1].unobserved.mark(TARGET, "the target 10.0.0.1:1883 is not on this machine");
        let mut out = String::new();
        section(&mut out, &report);
        assert!(out.contains("<td>3.0 MiB</td><td>10.2 KiB</td><td>7.2%</td>"), "{out}");
        assert!(out.contains("INVALID: the generator was the bottleneck: &lt;cpu&gt;"), "{out}");
        assert!(out.contains("title=\"the target 10.0.0.1:1883 is not on this machine\">unobserved"), "{out}");
    }
}
