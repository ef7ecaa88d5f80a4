//! Validation of a tenant's policy: rate limits, command rules, size and
//! connection limits, TTL rules.

use crate::model::*;
use crate::raw::*;
use crate::validate::Checker;
use serde_saphyr::Spanned;
use std::time::Duration;
use tenantry_protocol::command::{self, acl};

impl Checker<'_> {
    pub(crate) fn rate_limit(&mut self, raw: &Spanned<RawRateLimit>, field: &str) -> Option<RateLimit> {
        let r = &raw.value;
        let ops = self.quota(&r.ops_per_sec, &r.burst, &format!("{field}.ops_per_sec"));
        let bytes = match &r.bytes_per_sec {
            Some(rate) => {
                let per_sec = self.size(&Some(rate.clone()), &format!("{field}.bytes_per_sec"), 0);
                let burst = self.size(&r.bytes_burst, &format!("{field}.bytes_burst"), per_sec);
                self.quota_values(per_sec as u64, burst as u64, rate, &format!("{field}.bytes_per_sec"))
            }
            None => None,
        };
        let per_connection_ops =
            self.quota(&r.per_connection_ops_per_sec, &None, &format!("{field}.per_connection_ops_per_sec"));
        let on_exceed = match r.on_exceed.as_ref().map(|s| s.value.as_str()) {
            None | Some("reject") => {
                if let Some(d) = &r.max_delay {
                    self.error(d.referenced, &format!("{field}.max_delay"), "only used with on_exceed: delay");
                }
                OnExceed::Reject
            }
            Some("delay") => {
                OnExceed::Delay(self.duration(&r.max_delay, &format!("{field}.max_delay"), Duration::from_millis(100)))
            }
            Some(other) => {
                let at = r.on_exceed.as_ref().expect("some").referenced;
                self.error(at, &format!("{field}.on_exceed"), format!("{other:?} is not reject or delay"));
                OnExceed::Reject
            }
        };
        if ops.is_none() && bytes.is_none() && per_connection_ops.is_none() {
            self.error(raw.referenced, field, "set ops_per_sec, bytes_per_sec or per_connection_ops_per_sec");
            return None;
        }
        Some(RateLimit { ops, bytes, on_exceed, per_connection_ops })
    }

    fn quota(&mut self, rate: &Option<Spanned<u64>>, burst: &Option<Spanned<u64>>, field: &str) -> Option<Quota> {
        let rate = rate.as_ref()?;
        let b = burst.as_ref().map_or(rate.value, |b| b.value);
        let s = Spanned::new(String::new(), rate.referenced, rate.defined);
        self.quota_values(rate.value, b, &s, field)
    }

    fn quota_values(&mut self, per_sec: u64, burst: u64, at: &Spanned<String>, field: &str) -> Option<Quota> {
        let (Ok(per_sec), Ok(burst)) = (u32::try_from(per_sec), u32::try_from(burst)) else {
            self.error(at.referenced, field, "must be below 4294967296");
            return None;
        };
        if per_sec == 0 || burst == 0 {
            self.error(at.referenced, field, "rate and burst must be at least 1");
            return None;
        }
        Some(Quota { per_sec, burst })
    }

    pub(crate) fn commands(&mut self, raw: &Spanned<RawCommands>, field: &str) -> CommandRules {
        let mut rules = CommandRules::default();
        for (list, name, out) in
            [(&raw.value.allow, "allow", &mut rules.allow), (&raw.value.deny, "deny", &mut rules.deny)]
        {
            for entry in list {
                let text = entry.value.trim();
                let rule = if let Some(cat) = text.strip_prefix('@') {
                    match acl::NAMES.iter().position(|n| n.eq_ignore_ascii_case(cat)) {
                        Some(i) => Some(CommandRule::Category { name: acl::NAMES[i].to_string(), bit: 1 << i }),
                        None => {
                            self.errors_push(
                                entry,
                                &format!("{field}.{name}"),
                                format!("unknown ACL category {text:?}"),
                            );
                            None
                        }
                    }
                } else if command::lookup(text.as_bytes()).is_some() {
                    Some(CommandRule::Command(text.to_ascii_lowercase()))
                } else {
                    self.errors_push(entry, &format!("{field}.{name}"), format!("{text:?} is not a Redis command"));
                    None
                };
                out.extend(rule);
            }
        }
        rules
    }

    fn errors_push(&mut self, at: &Spanned<String>, field: &str, message: String) {
        self.error(at.referenced, field, message);
    }

    pub(crate) fn tenant_limits(
        &mut self,
        raw: &Spanned<RawTenantLimits>,
        field: &str,
        global: &OutputLimits,
    ) -> TenantLimits {
        let l = &raw.value;
        let size = |c: &mut Self, v: &Option<Spanned<String>>, name: &str| {
            v.as_ref().map(|_| c.size(v, &format!("{field}.{name}"), usize::MAX))
        };
        TenantLimits {
            max_key_bytes: size(self, &l.max_key_bytes, "max_key_bytes"),
            max_value_bytes: size(self, &l.max_value_bytes, "max_value_bytes"),
            max_connections: l
                .max_connections
                .as_ref()
                .map(|_| self.count(&l.max_connections, &format!("{field}.max_connections"), 1)),
            max_pipeline: l
                .max_pipeline
                .as_ref()
                .map(|_| self.count(&l.max_pipeline, &format!("{field}.max_pipeline"), 1)),
            max_pipeline_bytes: l
                .max_pipeline_bytes
                .as_ref()
                .map(|_| self.positive_size(&l.max_pipeline_bytes, &format!("{field}.max_pipeline_bytes"), 1)),
            output: (l.output_soft.is_some() || l.output_soft_seconds.is_some() || l.output_hard.is_some()).then(
                || {
                    let out = (&l.output_soft, &l.output_soft_seconds, &l.output_hard);
                    self.output_limits(out, field, global, raw.referenced)
                },
            ),
        }
    }

    pub(crate) fn ttl(&mut self, raw: &Spanned<RawTtl>, field: &str) -> TtlPolicy {
        let t = &raw.value;
        let tenant = self.ttl_rule(&t.default, &t.max, &t.jitter, field);
        let mut keyspaces = std::collections::BTreeMap::new();
        for (name, rule) in &t.keyspaces {
            let f = format!("{field}.keyspaces.{name}");
            if name.is_empty() || name.contains(':') {
                self.error(rule.referenced, &f, "a keyspace is the key's first segment: non-empty, without ':'");
            }
            let r = &rule.value;
            // A keyspace rule inherits what it does not set from the tenant's rule.
            let mut own = self.ttl_rule(&r.default, &r.max, &r.jitter, &f);
            own.default = own.default.or(tenant.default);
            own.max = own.max.or(tenant.max);
            if r.jitter.is_none() {
                own.jitter_percent = tenant.jitter_percent;
            }
            if let (Some(d), Some(m)) = (own.default, own.max) {
                if d > m {
                    self.error(rule.referenced, &f, "default is longer than max");
                }
            }
            keyspaces.insert(name.as_bytes().to_vec(), own);
        }
        TtlPolicy { tenant, keyspaces }
    }

    fn ttl_rule(
        &mut self,
        default: &Option<Spanned<String>>,
        max: &Option<Spanned<String>>,
        jitter: &Option<Spanned<String>>,
        field: &str,
    ) -> TtlRule {
        let d = default.as_ref().map(|_| self.duration(default, &format!("{field}.default"), Duration::from_secs(1)));
        let m = max.as_ref().map(|_| self.duration(max, &format!("{field}.max"), Duration::from_secs(1)));
        for (v, name) in [(d, "default"), (m, "max")] {
            if v.is_some_and(|v| v < Duration::from_millis(1)) {
                let at = if name == "default" { default } else { max };
                self.error(at.as_ref().expect("some").referenced, &format!("{field}.{name}"), "must be at least 1ms");
            }
        }
        if let (Some(dv), Some(mv)) = (d, m) {
            if dv > mv {
                self.error(
                    default.as_ref().expect("some").referenced,
                    &format!("{field}.default"),
                    "default is longer than max",
                );
            }
        }
        let jitter_percent = match jitter {
            None => 0,
            Some(j) => match j.value.trim().strip_suffix('%').and_then(|n| n.trim().parse::<u8>().ok()) {
                Some(p) if p < 100 => p,
                _ => {
                    self.error(
                        j.referenced,
                        &format!("{field}.jitter"),
                        format!("{:?} is not a percentage from 0% to 99%", j.value),
                    );
                    0
                }
            },
        };
        TtlRule { default: d, max: m, jitter_percent }
    }
}

impl Checker<'_> {
    pub(crate) fn memory_quota(&mut self, t: &RawTenant, field: &str) -> Option<MemoryQuota> {
        let eviction = t.eviction.as_ref().and_then(|e| {
            let found = Eviction::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(e.value.trim()));
            if found.is_none() {
                let names: Vec<&str> = Eviction::NAMES.iter().map(|(n, _)| *n).collect();
                self.error(
                    e.referenced,
                    &format!("{field}.eviction"),
                    format!("{:?} is not one of {}", e.value, names.join(", ")),
                );
            }
            found.map(|(_, e)| *e)
        });
        let Some(raw) = &t.memory_quota else {
            if let Some(e) = &t.eviction {
                self.error(e.referenced, &format!("{field}.eviction"), "only used with memory_quota");
            }
            return None;
        };
        let bytes = self.size(&t.memory_quota, &format!("{field}.memory_quota"), 0);
        if bytes == 0 {
            self.error(raw.referenced, &format!("{field}.memory_quota"), "must be more than 0");
            return None;
        }
        Some(MemoryQuota { bytes: bytes as u64, eviction: eviction.unwrap_or(Eviction::NoEviction) })
    }

    pub(crate) fn quotas(&mut self, r: &RawQuotas) -> QuotaSettings {
        let d = QuotaSettings::default();
        let clamp = |n: usize| n.min(u32::MAX as usize) as u32;
        QuotaSettings {
            scan_keys_per_sec: clamp(self.count(
                &r.scan_keys_per_sec,
                "quotas.scan_keys_per_sec",
                d.scan_keys_per_sec as usize,
            )),
            sample_one_in: clamp(self.count(&r.sample_one_in, "quotas.sample_one_in", d.sample_one_in as usize)),
            eviction_samples: clamp(self.count(
                &r.eviction_samples,
                "quotas.eviction_samples",
                d.eviction_samples as usize,
            ))
            .min(64),
            refresh: self.duration(&r.refresh, "quotas.refresh", d.refresh),
            measure_all: r.measure_all.unwrap_or(d.measure_all),
        }
    }
}
