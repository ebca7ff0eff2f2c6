//! Prompt adherence of a generator: a fixed set of held-out prompts with fixed seeds, and
//! the share of generated pictures whose attributes, as the classifier reads them, match
//! what the prompt asked for. One-object and two-object prompts are tallied apart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kakusan_data::{canonical_prompt, Dataset, Glyph, Scene, Size, Split};

use crate::attribute::Attribute;
use crate::error::Result;
use crate::evaluate::Prediction;

/// Share of two-object prompts in the evaluation set.
pub const PAIR_FRACTION: f32 = 0.25;

/// One prompt of the evaluation set.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalCase {
    /// What the prompt asks for.
    pub scene: Scene,
    /// The canonical prompt of the scene (every attribute named).
    pub prompt: String,
    /// The generation seed.
    pub seed: u64,
}

/// `count` prompts of held-out attribute combinations (glyph × colour pairs never trained
/// on), a quarter of them two-object, deterministic from `seed`; case i uses seed
/// `seed * 1000 + i`.
pub fn held_out_cases(count: usize, seed: u64) -> Result<Vec<EvalCase>> {
    cases_of(Split::HeldOut, count, seed)
}

/// [`held_out_cases`] drawn from `split`: [`Split::Train`] gives combinations the model
/// was trained on, which tells a model that cannot compose attributes from one that cannot
/// draw them at all.
pub fn cases_of(split: Split, count: usize, seed: u64) -> Result<Vec<EvalCase>> {
    let data = Dataset::new(seed, split, 64)?.with_two_object_fraction(PAIR_FRACTION)?;
    Ok((0..count as u64)
        .map(|i| {
            let scene = data.scene(i);
            EvalCase {
                prompt: canonical_prompt(&scene),
                scene,
                seed: seed.wrapping_mul(1000).wrapping_add(i),
            }
        })
        .collect())
}

/// The same cases with every object drawn as `glyph` (prompts rewritten to match; seeds,
/// colours, positions, sizes and backgrounds kept): adherence on one glyph, such as a novel
/// glyph a fine-tuned model was taught ([`kakusan_data::Glyph::NOVEL`]).
pub fn with_glyph(cases: Vec<EvalCase>, glyph: Glyph) -> Vec<EvalCase> {
    cases
        .into_iter()
        .map(|case| {
            let scene = case.scene.with_glyph(glyph);
            EvalCase {
                prompt: canonical_prompt(&scene),
                scene,
                seed: case.seed,
            }
        })
        .collect()
}

/// Hits per attribute over a number of pictures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub hits: [usize; 5],
    pub total: usize,
}

impl Tally {
    /// The share of pictures whose `attribute` matched (0 when empty).
    pub fn share(&self, attribute: Attribute) -> f64 {
        let i = Attribute::ALL
            .iter()
            .position(|&a| a == attribute)
            .unwrap_or(0);
        if self.total == 0 {
            0.0
        } else {
            self.hits[i] as f64 / self.total as f64
        }
    }
}

/// Adherence of one-object pictures (all five attributes) and of the objects of two-object
/// pictures (each object counted; position is the half the object must be in, size is not
/// asked of pairs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adherence {
    pub single: Tally,
    pub pair_objects: Tally,
    /// Two-object pictures where both objects got glyph and colour right.
    pub pairs_fully_right: usize,
    pub pairs: usize,
    /// One-object pictures by (glyph asked, glyph read): which glyphs the model draws
    /// right and what it draws instead.
    pub glyph_readings: BTreeMap<(Glyph, Glyph), usize>,
    /// One-object pictures by the size asked: (glyph right, pictures). Tells whether the
    /// glyphs a model misses are the small ones (a few latent cells across).
    pub glyph_by_size: BTreeMap<Size, (usize, usize)>,
}

/// Which attributes of `p` match `wanted` (object `index` of the scene).
fn matches(scene: &Scene, index: usize, p: &Prediction) -> [bool; 5] {
    let Some(o) = scene.objects.get(index) else {
        return [false; 5];
    };
    [
        p.glyph == o.glyph,
        p.colour == o.colour,
        p.background == scene.background,
        p.position == o.position,
        p.size == o.size,
    ]
}

impl Adherence {
    /// Records a one-object picture; returns the attributes that missed.
    pub fn record_single(&mut self, scene: &Scene, p: &Prediction) -> Vec<Attribute> {
        let m = matches(scene, 0, p);
        self.single.total += 1;
        if let Some(o) = scene.objects.first() {
            *self.glyph_readings.entry((o.glyph, p.glyph)).or_default() += 1;
            let by_size = self.glyph_by_size.entry(o.size).or_default();
            by_size.0 += usize::from(m[0]);
            by_size.1 += 1;
        }
        let mut missed = Vec::new();
        for (i, ok) in m.iter().enumerate() {
            if *ok {
                self.single.hits[i] += 1;
            } else {
                missed.push(Attribute::ALL[i]);
            }
        }
        missed
    }

    /// Records a two-object picture read as (first, second) object views; returns whether
    /// both objects got glyph and colour right. Positions of pair views are the halves, so
    /// only glyph, colour and background are counted.
    pub fn record_pair(&mut self, scene: &Scene, p: &[Prediction; 2]) -> bool {
        self.pairs += 1;
        let mut all = true;
        for (k, pred) in p.iter().enumerate() {
            let m = matches(scene, k, pred);
            self.pair_objects.total += 1;
            for (hit, ok) in self.pair_objects.hits.iter_mut().zip(&m[..3]) {
                if *ok {
                    *hit += 1;
                }
            }
            all &= m[0] && m[1];
        }
        if all {
            self.pairs_fully_right += 1;
        }
        all
    }
}

/// The adherence kakusan-mini must reach on one-object held-out prompts with default
/// settings (glyph = shape or digit); size has no target.
pub const TARGETS: [(Attribute, f64); 4] = [
    (Attribute::Colour, 0.90),
    (Attribute::Glyph, 0.85),
    (Attribute::Position, 0.85),
    (Attribute::Background, 0.90),
];

impl Adherence {
    /// The targets of [`TARGETS`] that the one-object pictures missed, as
    /// (attribute, share reached, target). Empty when every target is met; every target
    /// when no one-object picture was recorded.
    pub fn missed_targets(&self) -> Vec<(Attribute, f64, f64)> {
        TARGETS
            .iter()
            .filter_map(|&(a, target)| {
                let share = self.single.share(a);
                (self.single.total == 0 || share < target).then_some((a, share, target))
            })
            .collect()
    }
}

impl fmt::Display for Adherence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>14} {:>16}",
            "attribute", "one object", "two objects"
        )?;
        writeln!(
            f,
            "{:<12} {:>14} {:>16}",
            "",
            format!("({} pictures)", self.single.total),
            format!("({} objects)", self.pair_objects.total)
        )?;
        for (i, a) in Attribute::ALL.iter().enumerate() {
            let pair = if i < 3 && self.pair_objects.total > 0 {
                format!("{:.1} %", 100.0 * self.pair_objects.share(*a))
            } else {
                "-".into()
            };
            writeln!(
                f,
                "{:<12} {:>14} {:>16}",
                a.name(),
                format!("{:.1} %", 100.0 * self.single.share(*a)),
                pair
            )?;
        }
        if self.pairs > 0 {
            writeln!(
                f,
                "two-object pictures with both objects right (glyph and colour): {}/{} = {:.1} %",
                self.pairs_fully_right,
                self.pairs,
                100.0 * self.pairs_fully_right as f64 / self.pairs as f64
            )?;
        }
        if !self.glyph_by_size.is_empty() {
            let sizes: Vec<String> = self
                .glyph_by_size
                .iter()
                .map(|(size, &(right, asked))| {
                    format!(
                        "{} {right}/{asked} = {:.1} %",
                        size.name(),
                        100.0 * right as f64 / asked.max(1) as f64
                    )
                })
                .collect();
            writeln!(f, "one object, glyph by size: {}", sizes.join(", "))?;
        }
        let by_glyph = self.glyph_lines();
        if !by_glyph.is_empty() {
            writeln!(
                f,
                "one object, glyph by glyph (right / asked, most common wrong reading):"
            )?;
            for line in by_glyph {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

impl Adherence {
    /// `name right/asked (wrong x n)` per glyph asked, in label order, four to a line.
    fn glyph_lines(&self) -> Vec<String> {
        let mut entries = Vec::new();
        let asked: BTreeSet<Glyph> = self.glyph_readings.keys().map(|&(a, _)| a).collect();
        for glyph in asked {
            let readings: Vec<(Glyph, usize)> = self
                .glyph_readings
                .iter()
                .filter(|((a, _), _)| *a == glyph)
                .map(|(&(_, read), &n)| (read, n))
                .collect();
            let total: usize = readings.iter().map(|&(_, n)| n).sum();
            let right = readings
                .iter()
                .find(|&&(read, _)| read == glyph)
                .map_or(0, |&(_, n)| n);
            let wrong = readings
                .iter()
                .filter(|&&(read, _)| read != glyph)
                .max_by_key(|&&(read, n)| (n, std::cmp::Reverse(read)))
                .map_or(String::new(), |&(read, n)| {
                    format!(" ({} x{n})", read.name())
                });
            entries.push(format!("{} {right}/{total}{wrong}", glyph.name()));
        }
        let width = entries.iter().map(String::len).max().unwrap_or(0) + 3;
        entries
            .chunks(4)
            .map(|c| {
                c.iter()
                    .map(|e| format!("{e:<width$}"))
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyph_by_glyph_lines_count_right_and_the_commonest_wrong_reading() {
        let cases = held_out_cases(60, 5).unwrap();
        let singles: Vec<&EvalCase> = cases
            .iter()
            .filter(|c| c.scene.objects.len() == 1)
            .collect();
        let mut a = Adherence::default();
        let nine = Glyph::ALL[16];
        let mut expected: BTreeMap<Glyph, (usize, usize)> = BTreeMap::new();
        let mut by_size: BTreeMap<Size, (usize, usize)> = BTreeMap::new();
        for (i, case) in singles.iter().enumerate() {
            let o = &case.scene.objects[0];
            // Every third picture read as a 9 (a wrong reading unless a 9 was asked).
            let read = if i % 3 == 0 { nine } else { o.glyph };
            let p = Prediction {
                glyph: read,
                colour: o.colour,
                background: case.scene.background,
                position: o.position,
                size: o.size,
                confidence: [1.0; 5],
            };
            a.record_single(&case.scene, &p);
            let e = expected.entry(o.glyph).or_default();
            e.0 += usize::from(read == o.glyph);
            e.1 += 1;
            let e = by_size.entry(o.size).or_default();
            e.0 += usize::from(read == o.glyph);
            e.1 += 1;
        }
        let text = a.to_string();
        assert!(text.contains("glyph by glyph"), "{text}");
        assert_eq!(by_size.len(), 2, "both sizes asked");
        for (size, (right, asked)) in by_size {
            assert!(right < asked, "{size:?}: some wrong readings");
            let entry = format!(
                "{} {right}/{asked} = {:.1} %",
                size.name(),
                100.0 * right as f64 / asked as f64
            );
            assert!(text.contains(&entry), "{entry} not in\n{text}");
        }
        for (glyph, (right, total)) in expected {
            let entry = format!("{} {right}/{total}", glyph.name());
            assert!(text.contains(&entry), "{entry} not in\n{text}");
            if right < total {
                let wrong = format!("{entry} ({} x{})", nine.name(), total - right);
                assert!(text.contains(&wrong), "{wrong} not in\n{text}");
            }
        }
    }

    #[test]
    fn cases_of_one_glyph_keep_everything_else() {
        let moon = Glyph::NOVEL[0];
        let base = held_out_cases(40, 3).unwrap();
        let moons = with_glyph(base.clone(), moon);
        for (a, b) in base.iter().zip(&moons) {
            assert_eq!(a.seed, b.seed);
            assert_eq!(a.scene.background, b.scene.background);
            assert!(b.scene.objects.iter().all(|o| o.glyph == moon));
            assert!(b.prompt.contains("moon"), "{}", b.prompt);
            if let [object] = a.scene.objects.as_slice() {
                let old = a.prompt.replacen(object.glyph.name(), "moon", 1);
                assert_eq!(b.prompt, old.replace("an moon", "a moon"));
            }
        }
    }

    #[test]
    fn cases_are_fixed_held_out_and_mixed() {
        let a = held_out_cases(200, 1).unwrap();
        assert_eq!(a, held_out_cases(200, 1).unwrap());
        let t = cases_of(Split::Train, 200, 1).unwrap();
        assert!(t.iter().all(|c| Split::Train.contains(&c.scene)));
        assert!(a.iter().all(|c| Split::HeldOut.contains(&c.scene)));
        let pairs = a.iter().filter(|c| c.scene.objects.len() == 2).count();
        assert!((20..=80).contains(&pairs), "{pairs} pairs");
        assert_eq!(a[3].seed, 1003);
        assert!(a.iter().all(|c| !c.prompt.is_empty()));
    }

    #[test]
    fn tallies_count_hits_per_attribute() {
        let case = held_out_cases(50, 2)
            .unwrap()
            .into_iter()
            .find(|c| c.scene.objects.len() == 1)
            .unwrap();
        let o = &case.scene.objects[0];
        let right = Prediction {
            glyph: o.glyph,
            colour: o.colour,
            background: case.scene.background,
            position: o.position,
            size: o.size,
            confidence: [1.0; 5],
        };
        let wrong_colour = Prediction {
            colour: if o.colour == case.scene.background {
                kakusan_data::Colour::ALL[0]
            } else {
                case.scene.background
            },
            ..right
        };
        let mut adh = Adherence::default();
        assert!(adh.record_single(&case.scene, &right).is_empty());
        assert_eq!(
            adh.record_single(&case.scene, &wrong_colour),
            vec![Attribute::Colour]
        );
        assert_eq!(adh.single.total, 2);
        assert_eq!(adh.single.share(Attribute::Glyph), 1.0);
        assert_eq!(adh.single.share(Attribute::Colour), 0.5);
        // Colour at 50 % misses its target; glyph, position and background at 100 % do not.
        let missed = adh.missed_targets();
        assert_eq!(missed.len(), 1);
        assert_eq!(missed[0].0, Attribute::Colour);
        assert_eq!(missed[0].1, 0.5);
        assert_eq!(
            Adherence::default().missed_targets().len(),
            TARGETS.len(),
            "nothing recorded meets no target"
        );
        let text = adh.to_string();
        assert!(text.contains("50.0 %"), "{text}");
    }
}
