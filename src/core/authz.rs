//! Who may send what. The transport sets each envelope's `sender` from the broker-validated
//! AMQP `user_id`; config maps users to roles. Pure: decided against the state like any rule,
//! and a refusal is recorded like any rejection (`unauthorized`).

use super::rejection::Rejection;
use super::state::State;
use crate::command::Command;
use crate::domain::CitizenId;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case", deny_unknown_fields)]
pub enum Role {
    /// Program rules and budgets (the ministry, the Treasury).
    Admin,
    /// A welfare agency: beneficiaries and batches of its provinces and programs.
    Agency { provinces: BTreeSet<String>, programs: BTreeSet<String> },
    /// A bank connector: settlements of payouts routed to its BIN.
    Bank { bin: String },
}

/// User name -> role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles(pub BTreeMap<String, Role>);

fn refuse(message: String) -> Rejection {
    Rejection::new("unauthorized", message)
}

impl Role {
    fn agency_may(&self, province: &str, program: &str) -> bool {
        match self {
            Role::Agency { provinces, programs } => provinces.contains(province) && programs.contains(program),
            _ => false,
        }
    }
}

/// Checks that `sender` may send `command`. A citizen or payout that does not exist passes
/// here and meets its own rejection (`not_enrolled`, `payout_unknown`) in `decide`.
pub fn authorize(roles: &Roles, state: &State, sender: Option<&str>, command: &Command) -> Result<(), Rejection> {
    let sender = sender.ok_or_else(|| refuse("the message carries no user id".into()))?;
    let role = roles.0.get(sender).ok_or_else(|| refuse(format!("user {sender:?} has no role")))?;
    let kind = command.type_name();
    let deny = || refuse(format!("user {sender:?} may not send {kind} for this province, program or bank"));
    // Where does the command act? (province, program) for agency commands.
    let enrolled_in = |raw: &str, program: Option<&str>| -> Vec<(String, String)> {
        let Ok(id) = CitizenId::parse(raw) else { return Vec::new() };
        let id = state.current_id(&id).unwrap_or(id);
        let Some((_, person)) = state.person(&id) else { return Vec::new() };
        person
            .enrollments()
            .map(|e| (super::handles::province_str(e.province), state.program_by_handle(e.program).id.to_string()))
            .filter(|(_, prog)| program.is_none_or(|want| want == prog.as_str()))
            .collect()
    };
    let payout_scope = |payout_id: &str| state.payout(payout_id).map(|p| vec![(p.province(), p.program_id().to_string())]).unwrap_or_default();
    let scopes: Vec<(String, String)> = match (role, command) {
        (Role::Admin, Command::DefineProgram(_) | Command::SetStandardLevel(_) | Command::FundBudget(_)) => return Ok(()),
        // A national one-off program: the admin, or an agency whose programs include it (its
        // provinces do not apply: the program is national, its batches are by partition).
        (Role::Admin, Command::DefineOneOffProgram(_) | Command::FundOneOff(_) | Command::SubmitOneOffBatch(_)) => return Ok(()),
        (Role::Agency { programs, .. }, Command::DefineOneOffProgram(c)) => return if programs.contains(&c.program_id) { Ok(()) } else { Err(deny()) },
        (Role::Agency { programs, .. }, Command::FundOneOff(c)) => return if programs.contains(&c.program_id) { Ok(()) } else { Err(deny()) },
        (Role::Agency { programs, .. }, Command::SubmitOneOffBatch(c)) => return if programs.contains(&c.program_id) { Ok(()) } else { Err(deny()) },
        (Role::Admin, _) => return Err(deny()),
        (Role::Bank { bin }, Command::RecordSettlements(c)) => return if &c.bin == bin { Ok(()) } else { Err(deny()) },
        (Role::Bank { .. }, _) => return Err(deny()),
        (Role::Agency { .. }, Command::EnrollBeneficiary(c)) => vec![(c.province.clone(), c.program_id.clone())],
        (Role::Agency { .. }, Command::SubmitPayoutBatch(c)) => vec![(c.province.clone(), c.program_id.clone())],
        (Role::Agency { .. }, Command::ChangeCategory(c)) => enrolled_in(&c.citizen_id, Some(&c.program_id)),
        (Role::Agency { .. }, Command::SuspendBeneficiary(c) | Command::ResumeBeneficiary(c) | Command::TerminateBeneficiary(c)) => {
            enrolled_in(&c.citizen_id, Some(&c.program_id))
        }
        (Role::Agency { .. }, Command::ChangePaymentAccount(c)) => enrolled_in(&c.citizen_id, None),
        (Role::Agency { .. }, Command::ReassignCitizenId(c)) => enrolled_in(&c.old_citizen_id, None),
        (Role::Agency { .. }, Command::ReissuePayout(c) | Command::WriteOffPayout(c)) => payout_scope(&c.payout_id),
        (Role::Agency { .. }, Command::DefineProgram(_) | Command::SetStandardLevel(_) | Command::FundBudget(_) | Command::RecordSettlements(_)) => {
            return Err(deny())
        }
    };
    // Every enrollment or payout the command touches must be in the agency's scope.
    if scopes.iter().all(|(province, program)| role.agency_may(province, program)) {
        Ok(())
    } else {
        Err(deny())
    }
}
