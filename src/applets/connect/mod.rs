//! Connect: place a call leg to a trunk, SIP URIs or numbers, and bridge it to the
//! caller. Outcomes: `completed`, `no_answer`, `busy`, `failed`, `not_dialed`,
//! `transfer` (`busy` and `failed` fall back to `no_answer` when not given).

pub mod dial;
pub mod dynamic;
pub mod params;

use async_trait::async_trait;

pub use params::Connect;
pub use params::{
    CustomHeader, DEFAULT_MAX_DURATION, DEFAULT_RING_TIMEOUT, Dial, KEYS, NAME, Outcome, Target,
    outcome_names, parse_target,
};

use super::{Applet, Context, DecodeContext};
use crate::lang::diagnostic::{Diagnostics, did_you_mean};
use crate::lang::yaml::Node;
use crate::runtime::Step;

#[async_trait]
impl Applet for Connect {
    /// Decodes a connect body.
    fn decode(body: &Node, cx: DecodeContext<'_>, d: &mut Diagnostics) -> Option<Connect> {
        params::decode(body, cx, d)
    }

    fn check_outcome(outcome: &str) -> Result<(), String> {
        let names = outcome_names();
        if names.contains(&outcome) {
            Ok(())
        } else {
            Err(format!(
                "connect has no outcome '{outcome}'{}; its outcomes are {}",
                did_you_mean(outcome, names.iter().copied()),
                names.join(", ")
            ))
        }
    }

    fn kind(&self) -> &'static str {
        NAME
    }

    /// One line for graphs.
    fn summary(&self) -> String {
        match &self.dial {
            Dial::To(targets) => {
                let list: Vec<String> = targets.iter().map(Target::to_string).collect();
                format!("connect {}", list.join(", "))
            }
            Dial::Dynamic { url, .. } => format!("connect dynamic_url {}", url.source),
        }
    }

    fn waits(&self) -> bool {
        true
    }

    /// The outcomes that end the flow when left without a transition.
    fn expected_outcomes(&self) -> Vec<&'static str> {
        let mut out = vec![Outcome::Completed, Outcome::NoAnswer];
        if matches!(self.dial, Dial::Dynamic { .. }) {
            out.push(Outcome::NotDialed);
        }
        out.push(Outcome::Transfer);
        out.into_iter().map(Outcome::name).collect()
    }

    /// `busy` and `failed` fall back to `no_answer`.
    fn fallback(&self, outcome: &str) -> Option<&'static str> {
        [Outcome::Busy, Outcome::Failed]
            .iter()
            .any(|o| o.name() == outcome)
            .then_some(Outcome::NoAnswer.name())
    }

    async fn run(&self, cx: &mut Context<'_>) -> Step {
        if let Some(dual) = self.record {
            dial::record(cx, dual).await;
        }
        match &self.dial {
            Dial::To(targets) => match dial::plan(self, targets, cx) {
                Ok(plan) => dial::dial_plan(&plan, cx).await.step,
                Err(why) => dial::failed(cx, why),
            },
            Dial::Dynamic { url, fallback } => dynamic::run(self, url, fallback.as_ref(), cx).await,
        }
    }
}
