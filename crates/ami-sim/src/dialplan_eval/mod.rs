//! Dialplan evaluation as Asterisk 22 does it: variable substitution (`${NAME}`,
//! `${NAME:offset:length}`, `${FUNC(args)}`, `$[expr]`), dialplan functions read and
//! written by name, and the applications that reach beyond their own channel. Arguments
//! are split by [`ami_proto::app_args`], the reading the proxy's policy shares.
//! Everything that touches the PBX goes to the journal ([`crate::effects`]); nothing
//! touches the machine the sim runs on.
//!
//! Sources followed: `main/pbx_variables.c` (substitution, `pbx_builtin_setvar_helper`),
//! `main/pbx_functions.c` (function lookup, escalation guard), `main/pbx_app.c`,
//! `apps/app_exec.c`, `apps/app_softhangup.c`, `apps/app_mixmonitor.c`, `main/manager.c`.
//!
//! Input comes from the network: evaluation is bounded (nesting depth, lookups per
//! evaluation, result length) and never panics.
//!
//! This module holds the evaluation context ([`Ctx`]) and its bounds; its parts are
//! substitution, functions, applications and `$[…]` expressions, with the names the
//! captured PBX registers and the small text readings they share.

mod applications;
mod conf_files;
mod expr;
mod functions;
mod queue_functions;
mod registry;
mod substitution;
mod syntax;
#[cfg(test)]
mod tests;

pub use syntax::originate_variables;

use crate::channels::Channel;
use crate::effects::Effect;
use crate::pbx::Pbx;

/// Nesting of substitutions, `EVAL`, `IMPORT`, `Exec` and expressions.
const MAX_DEPTH: u32 = 32;
/// Variable and function lookups one evaluation may make.
const BUDGET: u32 = 4096;
/// Longest result kept (Asterisk's own buffers are a few KiB).
const MAX_LEN: usize = 64 * 1024;

/// What an application run left for the call to do: the application that finally ran
/// (through `Exec` / `ExecIf`) and its data, for the call's own handling (Answer, Hangup,
/// Queue, UserEvent, how long it blocks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub app: &'static str,
    pub data: String,
}

/// One evaluation: on a channel (or Asterisk's dummy channel when None), from a call or
/// from an action.
pub struct Ctx<'a> {
    pbx: &'a Pbx,
    chan: Option<&'a mut Channel>,
    /// The channel is a call's own copy (the call stores it); otherwise a copy of the
    /// table entry, and variable writes are forwarded to the table and the call.
    owned: bool,
    /// Escalating functions are refused (an AMI action evaluating with
    /// `live_dangerously` off).
    inhibit: bool,
    budget: u32,
    depth: u32,
}

impl<'a> Ctx<'a> {
    /// Evaluation by a call on its own channel (a PBX thread: never inhibited).
    pub fn call(pbx: &'a Pbx, chan: &'a mut Channel) -> Ctx<'a> {
        Ctx {
            pbx,
            chan: Some(chan),
            owned: true,
            inhibit: false,
            budget: BUDGET,
            depth: 0,
        }
    }

    /// Evaluation by an AMI action, on a copy of a live channel or on no channel.
    pub fn action(pbx: &'a Pbx, chan: Option<&'a mut Channel>) -> Ctx<'a> {
        Ctx {
            pbx,
            chan,
            owned: false,
            inhibit: !pbx.cfg.live_dangerously,
            budget: BUDGET,
            depth: 0,
        }
    }

    /// Overrides the escalation guard (a synchronous Originate sets its `Variable:`
    /// functions from the manager thread; an asynchronous one from its own).
    pub fn inhibited(mut self, inhibit: bool) -> Ctx<'a> {
        self.inhibit = inhibit;
        self
    }

    fn effect(&self, e: Effect) {
        self.pbx.effect(e);
    }

    fn chan_name(&self) -> String {
        self.chan.as_ref().map(|c| c.name.clone()).unwrap_or_default()
    }

    /// Takes one lookup from the budget; false when spent.
    fn spend(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }

    /// Runs `f` on another channel (a copy from the table), sharing this evaluation's
    /// budget and depth.
    fn on_other<T>(&mut self, other: &mut Channel, f: impl FnOnce(&mut Ctx<'_>) -> T) -> T {
        let mut sub = Ctx {
            pbx: self.pbx,
            chan: Some(other),
            owned: false,
            inhibit: self.inhibit,
            budget: self.budget,
            depth: self.depth + 1,
        };
        let r = f(&mut sub);
        self.budget = sub.budget;
        r
    }
}
