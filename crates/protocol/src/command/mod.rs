//! Redis's command table and lookups into it.

mod keys;
mod profile;
mod spec;
mod table;

pub use keys::{key_positions, KeyError, KeyPositions};
pub use profile::{
    profile, Blocking, Combine, ConnCommand, Counted, FunctionOp, KeyArgs, Profile, PubSubKind, Role, ScriptOp,
    Special, Spread, TimedOut, TtlArgs, Writes, ALL_FUNCTIONS, ALL_SCRIPTS, OTHER_DB, SERVER_WIDE,
};
pub use spec::{acl, flags, keyspec_flags, tips, BeginSearch, CommandSpec, FindKeys, KeySpec};
pub use table::{COMMANDS, COMMAND_COUNT, REDIS_VERSION};

/// Longest command or subcommand name in the table is well under this.
const MAX_NAME: usize = 40;

/// Finds a command by name, ignoring ASCII case, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    // Searched among the commands sharing its first letter only: a handful
    // of comparisons instead of eight or nine.
    find_in(by_first_letter(name.first()?.to_ascii_lowercase()), name, b"")
}

/// The commands whose names start with `first` (a run of the sorted table).
fn by_first_letter(first: u8) -> &'static [CommandSpec] {
    static RUNS: std::sync::LazyLock<[std::ops::Range<usize>; 26]> = std::sync::LazyLock::new(|| {
        std::array::from_fn(|i| {
            let letter = b'a' + i as u8;
            COMMANDS.partition_point(|c| c.name.as_bytes()[0] < letter)
                ..COMMANDS.partition_point(|c| c.name.as_bytes()[0] <= letter)
        })
    });
    match first {
        b'a'..=b'z' => &COMMANDS[RUNS[usize::from(first - b'a')].clone()],
        _ => &[],
    }
}

/// The command a request's arguments name: its subcommand's entry for a
/// container (`CLIENT SETNAME` is `client|setname`).
pub fn resolve(args: &[impl AsRef<[u8]>]) -> Option<&'static CommandSpec> {
    let top = lookup(args.first()?.as_ref())?;
    match args.get(1).filter(|_| !top.subcommands.is_empty()) {
        Some(sub) => lookup_subcommand(top, sub.as_ref()),
        None => Some(top),
    }
}

/// Finds `container|sub` among a container's subcommands.
pub fn lookup_subcommand(container: &'static CommandSpec, sub: &[u8]) -> Option<&'static CommandSpec> {
    let prefix = container.name.as_bytes();
    find_in(container.subcommands, sub, prefix)
}

fn find_in(table: &'static [CommandSpec], name: &[u8], prefix: &[u8]) -> Option<&'static CommandSpec> {
    let total = prefix.len() + usize::from(!prefix.is_empty()) + name.len();
    if total > MAX_NAME || name.is_empty() {
        return None;
    }
    let mut buf = [0u8; MAX_NAME];
    let mut len = 0;
    if !prefix.is_empty() {
        buf[..prefix.len()].copy_from_slice(prefix);
        buf[prefix.len()] = b'|';
        len = prefix.len() + 1;
    }
    for &b in name {
        buf[len] = b.to_ascii_lowercase();
        len += 1;
    }
    let wanted = &buf[..len];
    table.binary_search_by(|c| c.name.as_bytes().cmp(wanted)).ok().map(|i| &table[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_finds_subcommands() {
        assert_eq!(lookup(b"GeT").unwrap().name, "get");
        let object = lookup(b"OBJECT").unwrap();
        assert_eq!(lookup_subcommand(object, b"Encoding").unwrap().name, "object|encoding");
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(b"").is_none());
        assert!(lookup(b"1get").is_none());
        // Every command is found under its own name, whatever its first letter.
        for c in COMMANDS {
            assert!(std::ptr::eq(lookup(c.name.to_ascii_uppercase().as_bytes()).unwrap(), c), "{}", c.name);
        }
        assert!(lookup(&[b'a'; 200]).is_none());
    }

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(COMMANDS.windows(2).all(|w| w[0].name < w[1].name));
        for c in COMMANDS {
            assert!(c.subcommands.windows(2).all(|w| w[0].name < w[1].name));
            assert!(c.name.len() < MAX_NAME);
        }
    }
}
