//! The registry of names users type: A1111's sampler labels with an optional schedule
//! suffix ("DPM++ 2M Karras", "Euler a", "DPM++ SDE Exponential"), ComfyUI's sampler and
//! scheduler names (`dpmpp_2m` + `karras`), and their aliases.
//!
//! [`resolve`] turns a sampler name and an optional separate schedule name into the pair a
//! run needs; an unknown name is an error that lists the valid ones.

use crate::error::{Error, Result};
use crate::sampler::Sampler;
use crate::schedule::ScheduleKind;

/// Parses a sampler name, A1111 or ComfyUI style, with an optional schedule suffix
/// (A1111's pre-1.9 labels such as "DPM++ 2M Karras"). Returns the sampler and the
/// schedule the name implies, if any.
pub fn parse_sampler_name(name: &str) -> Result<(Sampler, Option<ScheduleKind>)> {
    if let Ok(sampler) = name.parse::<Sampler>() {
        return Ok((sampler, None));
    }
    let trimmed = name.trim();
    let lower = trimmed.to_ascii_lowercase();
    for kind in ScheduleKind::ALL {
        if kind == ScheduleKind::Model {
            continue;
        }
        for label in [kind.a1111_label(), kind.name()] {
            let suffix = format!(" {}", label.to_ascii_lowercase());
            if lower.len() > suffix.len() && lower.ends_with(&suffix) {
                let base = &trimmed[..trimmed.len() - suffix.len()];
                if let Ok(sampler) = base.parse::<Sampler>() {
                    return Ok((sampler, Some(kind)));
                }
            }
        }
    }
    Err(Error::UnknownSampler {
        name: name.to_string(),
        valid: valid_sampler_names(),
    })
}

/// The valid sampler names, for error messages.
pub fn valid_sampler_names() -> String {
    let samplers = Sampler::ALL
        .iter()
        .map(|s| format!("\"{}\" / {}", s.name(), s.id()))
        .collect::<Vec<_>>()
        .join(", ");
    let schedules = ScheduleKind::ALL
        .iter()
        .filter(|k| **k != ScheduleKind::Model)
        .map(|k| k.a1111_label())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{samplers} (an A1111 name may end with a schedule: {schedules}, e.g. \"DPM++ 2M Karras\")"
    )
}

/// The sampler and schedule of a run, from a sampler name and an optional schedule name
/// (`--sampler` and `--schedule`). A schedule named in the sampler ("DPM++ 2M Karras") is
/// used unless a different one is given separately, which is an error; without either,
/// the schedule is `normal` (A1111's and ComfyUI's default).
pub fn resolve(sampler: &str, schedule: Option<&str>) -> Result<(Sampler, ScheduleKind)> {
    let (sampler, implied) = parse_sampler_name(sampler)?;
    let given = schedule.map(str::parse::<ScheduleKind>).transpose()?;
    match (implied, given) {
        (Some(a), Some(b)) if a != b => Err(Error::InvalidSchedule(format!(
            "the sampler name says schedule {a} but the schedule given is {b}; give one of them"
        ))),
        (a, b) => Ok((sampler, b.or(a).unwrap_or(ScheduleKind::Normal))),
    }
}

/// One line per sampler and schedule: what `kakusan samplers` prints.
pub fn listing() -> String {
    let mut out = String::from("Samplers (A1111 name / ComfyUI name: what it does)\n");
    for s in Sampler::ALL {
        out.push_str(&format!(
            "  {:<18} {:<19} {}\n",
            s.name(),
            s.id(),
            s.description()
        ));
    }
    out.push_str("\nSchedules (--schedule, or an A1111 suffix: \"DPM++ 2M Karras\")\n");
    for k in ScheduleKind::ALL {
        out.push_str(&format!(
            "  {:<16} {:<16} {}\n",
            k.name(),
            k.a1111_label(),
            k.description()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1111_names_with_schedules() {
        assert_eq!(
            parse_sampler_name("DPM++ 2M Karras").unwrap(),
            (Sampler::Dpmpp2m, Some(ScheduleKind::Karras))
        );
        assert_eq!(
            parse_sampler_name("DPM++ 2M SDE Heun Exponential").unwrap(),
            (Sampler::Dpmpp2mSdeHeun, Some(ScheduleKind::Exponential))
        );
        assert_eq!(
            parse_sampler_name("Euler a").unwrap(),
            (Sampler::EulerAncestral, None)
        );
        // "DDIM" is a sampler before it is a schedule suffix.
        assert_eq!(parse_sampler_name("DDIM").unwrap(), (Sampler::Ddim, None));
        assert_eq!(
            parse_sampler_name("Euler SGM Uniform").unwrap(),
            (Sampler::Euler, Some(ScheduleKind::SgmUniform))
        );
        assert_eq!(
            parse_sampler_name("dpm_2_ancestral").unwrap(),
            (Sampler::Dpm2Ancestral, None)
        );
    }

    #[test]
    fn comfy_names_and_conflicts() {
        assert_eq!(
            resolve("dpmpp_2m", Some("karras")).unwrap(),
            (Sampler::Dpmpp2m, ScheduleKind::Karras)
        );
        assert_eq!(
            resolve("DPM++ 2M Karras", None).unwrap(),
            (Sampler::Dpmpp2m, ScheduleKind::Karras)
        );
        assert_eq!(
            resolve("DPM++ 2M Karras", Some("Karras")).unwrap(),
            (Sampler::Dpmpp2m, ScheduleKind::Karras)
        );
        assert!(resolve("DPM++ 2M Karras", Some("exponential")).is_err());
        assert_eq!(
            resolve("lms", None).unwrap(),
            (Sampler::Lms, ScheduleKind::Normal)
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = resolve("DPM++ 4M", None).unwrap_err().to_string();
        assert!(err.contains("\"DPM++ 4M\""), "{err}");
        assert!(err.contains("\"DPM++ 2M\" / dpmpp_2m"), "{err}");
        assert!(err.contains("Karras"), "{err}");
        let err = resolve("euler", Some("cosine")).unwrap_err().to_string();
        assert!(err.contains("sgm_uniform"), "{err}");
    }

    #[test]
    fn listing_has_a_line_per_sampler() {
        let text = listing();
        for s in Sampler::ALL {
            assert!(text.contains(s.id()), "{}", s.id());
        }
        assert!(text.lines().count() >= Sampler::ALL.len() + ScheduleKind::ALL.len());
    }
}
