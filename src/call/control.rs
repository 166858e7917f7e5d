//! The live call as the flow runtime sees it: [`CallControl`] over [`Call`].

use std::time::Duration;

use async_trait::async_trait;

use super::bridge::Call;
use crate::runtime::{CallControl, LegEnd, LegOutcome, LegRequest};

#[async_trait]
impl CallControl for Call {
    async fn dial(&mut self, leg: LegRequest) -> LegOutcome {
        Call::dial(self, leg).await
    }

    async fn dial_parallel(&mut self, legs: Vec<LegRequest>, ring: Duration) -> LegOutcome {
        Call::dial_parallel(self, legs, ring).await
    }

    async fn wait(&mut self, max: Duration) -> LegEnd {
        Call::wait(self, max).await
    }

    async fn hangup(&mut self, status: u16) {
        Call::hangup(self, status).await
    }

    async fn until_caller_gone(&mut self) {
        Call::until_caller_gone(self).await
    }

    fn take_redirect(&mut self) -> Option<String> {
        self.redirect.take()
    }

    fn caller_gone(&self) -> bool {
        self.caller.gone()
    }

    fn answered(&self) -> bool {
        self.caller.answered()
    }

    fn caller_cancelled(&self) -> bool {
        self.caller.was_cancelled()
    }

    async fn record(&mut self, dual: bool) -> Result<(), String> {
        Call::record(self, dual).await
    }
}
