//! The churn inside a lesson (05 and 09): its flags, and the narration and facts of a run.
//! The engine itself is the parent module.

use anyhow::Result;

use super::{ChurnReport, Closer, Config, Sample, TASKS, WORKERS, run};
use crate::facts;
use crate::lab::{Lab, print_line};

/// The churn flags of lessons 05 and 09, flattened into the lesson binaries' flags and the
/// runner's `run`/`tour` (which passes them on to those two lessons only).
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct ChurnArgs {
    /// Lessons 05 and 09: afterwards, run the churn generator for this many seconds (at most
    /// 10) in a private network namespace: open and close connections as fast as two cores
    /// allow (or at --churn-rate) and watch TIME_WAIT pile up (05) or the ports run out (09).
    #[arg(long, value_name = "SECS")]
    pub churn_secs: Option<f64>,
    /// With --churn-secs: aim at this many connections per second instead of full speed, to
    /// see TIME_WAIT grow by exactly that much each second.
    #[arg(long, value_name = "PER_SEC", requires = "churn_secs")]
    pub churn_rate: Option<f64>,
}

impl ChurnArgs {
    /// The flags' names, for hiding them where a lesson has no churn phase.
    pub const IDS: [&str; 2] = ["churn_secs", "churn_rate"];

    /// Whether any churn flag was given.
    pub fn given(&self) -> bool {
        self.churn_secs.is_some()
    }

    /// The flags again, as a lesson binary takes them.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(secs) = self.churn_secs {
            out.extend(["--churn-secs".to_string(), secs.to_string()]);
        }
        if let Some(rate) = self.churn_rate {
            out.extend(["--churn-rate".to_string(), rate.to_string()]);
        }
        out
    }
}

impl Config {
    /// The churn a lesson's flags ask for (`--churn-secs`, `--churn-rate`), checked, or `None`
    /// without `--churn-secs`. Lessons call it first, so that a bad value is refused before
    /// anything runs.
    pub fn from_lesson_args(lab: &Lab, closer: Closer) -> Result<Option<Config>> {
        let Some(secs) = lab.args.churn.churn_secs else {
            return Ok(None);
        };
        let cfg = Config {
            rate: lab.args.churn.churn_rate,
            ..Config::new(secs, closer)
        };
        cfg.check()?;
        Ok(Some(cfg))
    }
}

/// Run the churn inside a lesson: narrate the samples as they come (about one a second),
/// then what it did, and record the common `churn_*` facts. The lesson adds its arithmetic.
/// `cfg` comes from [`Config::from_lesson_args`], already checked ([`run`] checks it again).
pub fn run_in_lesson(lab: &mut Lab, cfg: Config) -> Result<ChurnReport> {
    let who = match cfg.closer {
        Closer::Server => "the server",
        Closer::Client => "the client",
    };
    let pace = match cfg.rate {
        Some(r) => format!("at {r:.0} connections/s"),
        None => "as fast as two cores allow".to_string(),
    };
    let ports = if cfg.ports == 1 {
        "one listener port".to_string()
    } else {
        format!("{} listener ports", cfg.ports)
    };
    lab.step(format!(
        "Churn for {} s: {TASKS} tokio tasks on {WORKERS} threads open and close connections to \
         {ports} {pace}, {who} closing first",
        cfg.secs
    ));
    let narrating = lab.narrating();
    let show = |s: &Sample| {
        print_line(&format!(
            "    t={:>5.1} s  connections {:>7}  TIME_WAIT server {:>6} client {:>6}  (snapshot {:.0} ms)",
            s.t_ms as f64 / 1000.0,
            s.connections,
            s.server_time_wait,
            s.client_time_wait,
            s.snapshot_ms
        ))
    };
    // About one line a second while it runs, and always the last sample.
    let mut last_shown: Option<u64> = None;
    let report = run(cfg, |s| {
        if narrating && last_shown.is_none_or(|t| s.t_ms >= t + 900) {
            last_shown = Some(s.t_ms);
            show(s);
        }
    })?;
    if let Some(last) = report.samples.last()
        && narrating
        && last_shown != Some(last.t_ms)
    {
        show(last);
    }
    let per_cpu = report.connections as f64 / report.cpu_secs.max(1e-3);
    lab.say(format!(
        "{} connections in {:.2} s: {:.0} connections/s ({} failed); peak TIME_WAIT {}",
        report.connections, report.secs, report.rate_per_sec, report.failed, report.peak_time_wait
    ));
    lab.say(format!(
        "this process used {:.2} CPU-seconds: {per_cpu:.0} connections per CPU-second (on a busy \
         machine the wall-clock rate is lower than what two free cores would do)",
        report.cpu_secs
    ));
    lab.fact(facts::CHURN_CLOSER, report.closer);
    lab.fact(facts::CHURN_SECS, report.secs);
    lab.fact(facts::CHURN_TARGET_RATE, report.target_rate);
    lab.fact(facts::CHURN_PORTS, report.ports);
    lab.fact(facts::CHURN_CONNECTIONS, report.connections);
    lab.fact(facts::CHURN_FAILED, report.failed);
    lab.fact(facts::CHURN_EXHAUSTED, report.exhausted);
    lab.fact(
        facts::CHURN_RATE_PER_SEC,
        report.rate_per_sec.round() as u64,
    );
    lab.fact("churn_cpu_secs", report.cpu_secs);
    lab.fact("churn_per_cpu_sec", per_cpu.round() as u64);
    lab.fact(facts::CHURN_PEAK_TIME_WAIT, report.peak_time_wait);
    lab.fact(facts::TCP_MAX_TW_BUCKETS, report.tcp_max_tw_buckets);
    lab.fact("churn_tw_recycled", report.tw_recycled);
    lab.fact("churn_tw_overflow", report.tw_overflow);
    lab.fact(facts::CHURN_SAMPLES, &report.samples);
    Ok(report)
}
