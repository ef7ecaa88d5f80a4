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
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    // Lowered and hashed in one pass; then a probe or two in a table of
    // several times as many slots as commands, where a binary search made
    // a handful of string comparisons: once per request.
    let mut buf = [0u8; MAX_NAME];
    let mut hash = FNV_OFFSET;
    for (slot, &b) in buf.iter_mut().zip(name) {
        *slot = b.to_ascii_lowercase();
        hash = (hash ^ u32::from(*slot)).wrapping_mul(FNV_PRIME);
    }
    let wanted = &buf[..name.len()];
    let index = &*NAME_INDEX;
    let mut i = hash as usize & (INDEX_SLOTS - 1);
    loop {
        let at = index[i];
        if at == EMPTY_SLOT {
            return None;
        }
        let spec = &COMMANDS[usize::from(at)];
        if spec.name.as_bytes() == wanted {
            return Some(spec);
        }
        i = (i + 1) & (INDEX_SLOTS - 1);
    }
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;
const INDEX_SLOTS: usize = 1024;
const EMPTY_SLOT: u16 = u16::MAX;

fn fnv(name: &[u8]) -> u32 {
    name.iter().fold(FNV_OFFSET, |h, &b| (h ^ u32::from(b)).wrapping_mul(FNV_PRIME))
}

/// Each top-level command's place in `COMMANDS`, by the hash of its name
/// (open addressing, linear probing).
static NAME_INDEX: std::sync::LazyLock<[u16; INDEX_SLOTS]> = std::sync::LazyLock::new(|| {
    let mut index = [EMPTY_SLOT; INDEX_SLOTS];
    for (at, spec) in COMMANDS.iter().enumerate() {
        let mut i = fnv(spec.name.as_bytes()) as usize & (INDEX_SLOTS - 1);
        while index[i] != EMPTY_SLOT {
            i = (i + 1) & (INDEX_SLOTS - 1);
        }
        index[i] = at as u16;
    }
    index
});

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
    fn every_command_is_found_by_its_name_in_any_case() {
        assert!(COMMANDS.len() * 2 <= INDEX_SLOTS, "the index is too full: make INDEX_SLOTS larger");
        for spec in COMMANDS {
            assert!(std::ptr::eq(lookup(spec.name.as_bytes()).unwrap(), spec), "{}", spec.name);
            let upper = spec.name.to_ascii_uppercase();
            assert!(std::ptr::eq(lookup(upper.as_bytes()).unwrap(), spec), "{upper}");
        }
        assert!(lookup(&[b'g'; MAX_NAME + 1]).is_none());
        assert!(lookup(b"ge").is_none() && lookup(b"gett").is_none());
    }

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
