//! End-to-end tests: the real `sockcap` binary against a real mosquitto (started by
//! the test on a free port with its own config) and against the embedded target,
//! with `ss` as the independent witness of socket states; `netlab` builds the multi-host
//! lab of network namespaces the distributed tests run in.

mod close_modes;
mod deadlines;
mod distributed;
mod faults;
mod faults_on_purpose;
mod html_report;
mod metrics;
mod mqtt5;
mod netlab;
mod preflight;
mod probe_cmd;
mod pubsub;
mod reconnect;
mod report_formats;
mod report_outputs;
mod scenario_bounds;
mod scenario_workers;
mod scenarios;
mod search;
mod serve_workers;
mod shards;
mod source_ports;
mod state_lab;
mod support;
mod target_spend;
mod tls;
mod unobserved;
mod validity;
mod workers;
mod ws;
