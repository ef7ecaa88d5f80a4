//! Command rules and size limits of a tenant: each refusal has its own error.

use crate::error::{Error, Kind};
use tenantry_config::{CommandRule, CommandRules, TenantId, TenantLimits};
use tenantry_protocol::command::{flags, CommandSpec};

fn matches(rule: &CommandRule, spec: &CommandSpec) -> bool {
    match rule {
        CommandRule::Command(name) => {
            let top = spec.name.split('|').next().unwrap_or(spec.name);
            name == top || name == spec.name
        }
        CommandRule::Category { bit, .. } => spec.acl & bit != 0,
    }
}

fn describe(rule: &CommandRule) -> String {
    match rule {
        CommandRule::Command(name) => name.to_ascii_uppercase(),
        CommandRule::Category { name, .. } => format!("@{name}"),
    }
}

/// `-NOPERM` if the tenant's allow and deny lists forbid the command.
pub fn check_command(tenant: &TenantId, rules: &CommandRules, spec: &CommandSpec) -> Result<(), Error> {
    if let Some(rule) = rules.deny.iter().find(|r| matches(r, spec)) {
        let why = format!("tenant '{tenant}' may not run '{}': denied by commands.deny {}", spec.name, describe(rule));
        return Err(Error::new(Kind::NoPerm, why));
    }
    if !rules.allow.is_empty() && !rules.allow.iter().any(|r| matches(r, spec)) {
        let why = format!("tenant '{tenant}' may not run '{}': not in commands.allow", spec.name);
        return Err(Error::new(Kind::NoPerm, why));
    }
    Ok(())
}

/// Key and value size limits. Keys are the client's keys (without the
/// namespace); values are the other arguments of commands that can grow
/// memory (Redis's `denyoom` flag: SET, HSET, LPUSH, XADD, ...).
pub fn check_sizes<A: AsRef<[u8]>>(
    tenant: &TenantId,
    limits: &TenantLimits,
    spec: &CommandSpec,
    args: &[A],
    keys: &[usize],
) -> Result<(), Error> {
    if let Some(max) = limits.max_key_bytes {
        if let Some(&i) = keys.iter().find(|&&i| args[i].as_ref().len() > max) {
            let why = format!(
                "key too large for tenant '{tenant}': {} bytes, limits.max_key_bytes is {max}",
                args[i].as_ref().len()
            );
            return Err(Error::new(Kind::Limit, why));
        }
    }
    if let Some(max) = limits.max_value_bytes {
        if spec.has_flag(flags::DENYOOM) {
            let first_arg = 1 + spec.name.contains('|') as usize;
            for (i, a) in args.iter().enumerate().skip(first_arg) {
                if a.as_ref().len() > max && !keys.contains(&i) {
                    let why = format!(
                        "value too large for tenant '{tenant}': {} bytes, limits.max_value_bytes is {max}",
                        a.as_ref().len()
                    );
                    return Err(Error::new(Kind::Limit, why));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_protocol::command::lookup;

    fn rules(allow: &[CommandRule], deny: &[CommandRule]) -> CommandRules {
        CommandRules { allow: allow.to_vec(), deny: deny.to_vec() }
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let t = TenantId::new("t");
        let dangerous =
            CommandRule::Category { name: "dangerous".into(), bit: tenantry_protocol::command::acl::DANGEROUS };
        let read = CommandRule::Category { name: "read".into(), bit: tenantry_protocol::command::acl::READ };
        let r = rules(&[read], &[CommandRule::Command("get".into()), dangerous]);
        let e = check_command(&t, &r, lookup(b"get").unwrap()).unwrap_err();
        assert_eq!(e.resp(), "NOPERM tenant 't' may not run 'get': denied by commands.deny GET");
        assert!(check_command(&t, &r, lookup(b"sort").unwrap()).unwrap_err().resp().contains("@dangerous"));
        assert!(check_command(&t, &r, lookup(b"set").unwrap()).unwrap_err().resp().contains("not in commands.allow"));
        assert!(check_command(&t, &r, lookup(b"hget").unwrap()).is_ok());
    }

    #[test]
    fn sizes_are_checked_on_keys_and_written_values() {
        let t = TenantId::new("t");
        let l = TenantLimits { max_key_bytes: Some(3), max_value_bytes: Some(4), ..Default::default() };
        let set = lookup(b"set").unwrap();
        assert!(check_sizes(&t, &l, set, &["SET", "abc", "1234"], &[1]).is_ok());
        let key = check_sizes(&t, &l, set, &["SET", "abcd", "1"], &[1]).unwrap_err();
        assert!(key.resp().starts_with("ERR key too large"));
        let value = check_sizes(&t, &l, set, &["SET", "a", "12345"], &[1]).unwrap_err();
        assert!(value.resp().starts_with("ERR value too large"));
        // GET writes nothing: a long argument is not a value.
        assert!(check_sizes(&t, &l, lookup(b"echo").unwrap(), &["ECHO", "123456"], &[]).is_ok());
    }
}
