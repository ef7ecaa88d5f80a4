//! CLIENT TRACKING's options and the rules Redis applies to them, checked
//! here before anything reaches the backend (no I/O). tenantry must know
//! whether the backend will accept a change, or its own idea of the client's
//! tracking (its REDIRECT target, its prefixes) would drift from the
//! backend's; and the backend sees namespaced prefixes, so its refusals
//! would name them. The error texts are Redis's own.

use bytes::Bytes;

/// The mode tracking is on in, as the client asked for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Mode {
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// BCAST prefixes, under the client's names; once added, kept until OFF.
    pub prefixes: Vec<Bytes>,
}

/// A parsed `CLIENT TRACKING ON|OFF [options]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    pub on: bool,
    /// Where the REDIRECT argument is in the command (not yet read as a number).
    pub redirect: Option<usize>,
    /// The options as given (`prefixes`: this command's only).
    pub mode: Mode,
}

/// Redis's error reply for a tracking request it would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refused(pub String);

impl From<&str> for Refused {
    fn from(s: &str) -> Self {
        Refused(s.to_string())
    }
}

impl From<String> for Refused {
    fn from(s: String) -> Self {
        Refused(s)
    }
}

const SYNTAX: &str = "ERR syntax error";

/// `args`: the whole command (`CLIENT TRACKING on ...`).
pub(super) fn parse(args: &[Bytes]) -> Result<Request, Refused> {
    let mut req = Request { on: false, redirect: None, mode: Mode::default() };
    let mut i = 3;
    while i < args.len() {
        let more = i + 1 < args.len();
        let a = args[i].to_ascii_lowercase();
        match a.as_slice() {
            b"redirect" if more => {
                if req.redirect.is_some() {
                    return Err("ERR A client can only redirect to a single other client".into());
                }
                i += 1;
                req.redirect = Some(i);
            }
            b"prefix" if more => {
                i += 1;
                req.mode.prefixes.push(args[i].clone());
            }
            b"bcast" => req.mode.bcast = true,
            b"optin" => req.mode.optin = true,
            b"optout" => req.mode.optout = true,
            b"noloop" => req.mode.noloop = true,
            _ => return Err(SYNTAX.into()),
        }
        i += 1;
    }
    req.on = match args.get(2).map(|a| a.to_ascii_lowercase()) {
        Some(a) if a == b"on" => true,
        Some(a) if a == b"off" => false,
        _ => return Err(SYNTAX.into()),
    };
    Ok(req)
}

/// One of two prefixes starts the other (Redis's `stringCheckPrefix`).
fn overlap(a: &[u8], b: &[u8]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The mode after `req` (ON) given the current one, or Redis's refusal.
pub(super) fn apply(current: Option<&Mode>, req: &Request) -> Result<Mode, Refused> {
    let req = &req.mode;
    if !req.bcast && !req.prefixes.is_empty() {
        return Err("ERR PREFIX option requires BCAST mode to be enabled".into());
    }
    if let Some(cur) = current {
        if cur.bcast != req.bcast {
            return Err("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then \
                        re-enabling it with a different mode."
                .into());
        }
    }
    if req.bcast && (req.optin || req.optout) {
        return Err("ERR OPTIN and OPTOUT are not compatible with BCAST".into());
    }
    if req.optin && req.optout {
        return Err("ERR You can't specify both OPTIN mode and OPTOUT mode".into());
    }
    if let Some(cur) = current {
        if (req.optin && cur.optout) || (req.optout && cur.optin) {
            return Err("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then \
                        re-enabling it with a different mode."
                .into());
        }
    }
    let existing: &[Bytes] = current.map_or(&[], |c| &c.prefixes);
    if req.bcast {
        for (i, p) in req.prefixes.iter().enumerate() {
            if let Some(old) = existing.iter().find(|old| overlap(old, p)) {
                return Err(Refused(format!(
                    "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                    String::from_utf8_lossy(p),
                    String::from_utf8_lossy(old)
                )));
            }
            if let Some(other) = req.prefixes[i + 1..].iter().find(|o| overlap(p, o)) {
                return Err(Refused(format!(
                    "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                    String::from_utf8_lossy(p),
                    String::from_utf8_lossy(other)
                )));
            }
        }
    }
    let mut prefixes = existing.to_vec();
    if req.bcast {
        // BCAST without a prefix is every key (the tenant's, `tracking.rs`).
        let added: Vec<Bytes> = if req.prefixes.is_empty() { vec![Bytes::new()] } else { req.prefixes.clone() };
        for p in added {
            if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        }
    }
    Ok(Mode { prefixes, ..req.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str) -> Result<Request, Refused> {
        let args: Vec<Bytes> = line.split(' ').map(|s| Bytes::copy_from_slice(s.as_bytes())).collect();
        parse(&args)
    }

    fn on(current: Option<&Mode>, line: &str) -> Result<Mode, Refused> {
        apply(current, &req(line)?)
    }

    fn refusal(r: Result<impl std::fmt::Debug, Refused>) -> String {
        r.unwrap_err().0
    }

    #[test]
    fn parses_options_as_redis_does() {
        let r = req("CLIENT TRACKING on REDIRECT 7 BCAST PREFIX a PREFIX b NOLOOP").unwrap();
        assert_eq!(r.redirect, Some(4));
        assert!(r.on && r.mode.bcast && !r.mode.optin);
        assert_eq!(r.mode.prefixes, vec![Bytes::from("a"), Bytes::from("b")]);
        assert_eq!(refusal(req("CLIENT TRACKING on REDIRECT")), SYNTAX);
        assert_eq!(refusal(req("CLIENT TRACKING maybe")), SYNTAX);
        assert_eq!(refusal(req("CLIENT TRACKING on FOO")), SYNTAX);
        assert!(refusal(req("CLIENT TRACKING on REDIRECT 1 REDIRECT 2")).contains("single other client"));
    }

    #[test]
    fn mode_switches_are_refused_until_off() {
        let bcast = on(None, "CLIENT TRACKING on BCAST PREFIX a").unwrap();
        assert!(refusal(on(Some(&bcast), "CLIENT TRACKING on")).contains("switch BCAST"));
        let optin = on(None, "CLIENT TRACKING on OPTIN").unwrap();
        assert!(refusal(on(Some(&optin), "CLIENT TRACKING on OPTOUT")).contains("switch OPTIN/OPTOUT"));
        // Neither named again: tracking goes on in the default mode, as in Redis.
        assert_eq!(on(Some(&optin), "CLIENT TRACKING on").unwrap(), Mode::default());
        assert!(refusal(on(None, "CLIENT TRACKING on OPTIN OPTOUT")).contains("both OPTIN"));
        assert!(refusal(on(None, "CLIENT TRACKING on BCAST OPTIN")).contains("not compatible"));
        assert!(refusal(on(None, "CLIENT TRACKING on PREFIX a")).contains("requires BCAST"));
    }

    #[test]
    fn prefixes_accumulate_and_must_not_overlap() {
        let a = on(None, "CLIENT TRACKING on BCAST PREFIX user:").unwrap();
        let ab = on(Some(&a), "CLIENT TRACKING on BCAST PREFIX cart:").unwrap();
        assert_eq!(ab.prefixes, vec![Bytes::from("user:"), Bytes::from("cart:")]);
        let e = refusal(on(Some(&ab), "CLIENT TRACKING on BCAST PREFIX user:1"));
        assert_eq!(
            e,
            "ERR Prefix 'user:1' overlaps with an existing prefix 'user:'. Prefixes for a single client must not overlap."
        );
        let e = refusal(on(None, "CLIENT TRACKING on BCAST PREFIX x PREFIX xy"));
        assert!(e.contains("another provided prefix 'xy'"), "{e}");
        // BCAST alone is every key.
        assert_eq!(on(None, "CLIENT TRACKING on BCAST").unwrap().prefixes, vec![Bytes::new()]);
    }
}
