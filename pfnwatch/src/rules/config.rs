//! The operator's changes to the rule table: rules turned off, severities
//! changed. Flags and the configuration file parse into the same types.

use super::table::{RuleId, Severity};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleConfig {
    pub disabled: BTreeSet<RuleId>,
    pub severity: BTreeMap<RuleId, Severity>,
}

impl RuleConfig {
    /// The rules `disabled` turns off and the severities `severity` sets,
    /// on top of this configuration (later severities win).
    pub fn with(
        mut self,
        disabled: impl IntoIterator<Item = RuleId>,
        severity: impl IntoIterator<Item = (RuleId, Severity)>,
    ) -> RuleConfig {
        self.disabled.extend(disabled);
        self.severity.extend(severity);
        self
    }
}

/// `--rule-severity R1=warning` (or a rule's name before the `=`).
pub fn parse_rule_severity(spec: &str) -> Result<(RuleId, Severity), String> {
    let (id, sev) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?}: expected RULE=SEVERITY, e.g. R1=warning"))?;
    let rule = RuleId::parse(id)?;
    let sev = Severity::parse(sev.trim())
        .ok_or_else(|| format!("{spec:?}: unknown severity {sev:?} (info, warning or critical)"))?;
    Ok((rule, sev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_settings_parse_or_say_why_not() {
        assert_eq!(
            parse_rule_severity("r1 = critical"),
            Ok((RuleId::R1, Severity::Critical))
        );
        assert_eq!(
            parse_rule_severity("fault_insert_into_cow=info"),
            Ok((RuleId::R2, Severity::Info))
        );
        assert!(
            parse_rule_severity("R1")
                .unwrap_err()
                .contains("RULE=SEVERITY")
        );
        assert!(
            parse_rule_severity("R1=loud")
                .unwrap_err()
                .contains("\"loud\"")
        );
        assert!(
            parse_rule_severity("R10=info")
                .unwrap_err()
                .contains("unknown rule \"R10\"")
        );
    }

    #[test]
    fn with_adds_up() {
        let c = RuleConfig::default()
            .with([RuleId::R4], [(RuleId::R1, Severity::Warning)])
            .with([RuleId::R2], [(RuleId::R1, Severity::Critical)]);
        assert_eq!(c.disabled, [RuleId::R2, RuleId::R4].into());
        assert_eq!(c.severity[&RuleId::R1], Severity::Critical);
    }
}
