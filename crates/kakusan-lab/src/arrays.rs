//! Taguchi's orthogonal arrays and the assignment of factors to their columns.
//!
//! Levels are stored 0-based (`0, 1, 2`); Taguchi's printed tables number them 1, 2, 3.
//! L4, L8 and L16 are built over GF(2) and L9, L27 over GF(3): the basic columns are the digits
//! of the run number (most significant first) and every other column is a linear combination
//! of them, in the order of Taguchi's standard tables (column `c` of a two-level array is the
//! sum of the basic columns whose bits are set in `c`; the three-level columns are
//! A, B, A+B, 2A+B, C, A+C, 2A+C, B+C, ... with the last non-zero coefficient 1). L12 and L18
//! are tabulated.

use std::fmt;

/// The arrays the laboratory offers, smallest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArrayKind {
    L4,
    L8,
    L9,
    L12,
    L16,
    L18,
    L27,
}

impl ArrayKind {
    /// Every array, in the order [`smallest_fitting`] tries them (fewest runs first).
    pub const ALL: [ArrayKind; 7] = [
        ArrayKind::L4,
        ArrayKind::L8,
        ArrayKind::L9,
        ArrayKind::L12,
        ArrayKind::L16,
        ArrayKind::L18,
        ArrayKind::L27,
    ];

    /// Number of runs (rows).
    pub fn runs(self) -> usize {
        match self {
            ArrayKind::L4 => 4,
            ArrayKind::L8 => 8,
            ArrayKind::L9 => 9,
            ArrayKind::L12 => 12,
            ArrayKind::L16 => 16,
            ArrayKind::L18 => 18,
            ArrayKind::L27 => 27,
        }
    }

    /// (two-level columns, three-level columns).
    pub fn capacity(self) -> (usize, usize) {
        match self {
            ArrayKind::L4 => (3, 0),
            ArrayKind::L8 => (7, 0),
            ArrayKind::L9 => (0, 4),
            ArrayKind::L12 => (11, 0),
            ArrayKind::L16 => (15, 0),
            ArrayKind::L18 => (1, 7),
            ArrayKind::L27 => (0, 13),
        }
    }

    /// Parses "L8", "l8" or "8".
    pub fn parse(s: &str) -> Option<ArrayKind> {
        let t = s.trim();
        let t = t
            .strip_prefix('L')
            .or_else(|| t.strip_prefix('l'))
            .unwrap_or(t);
        ArrayKind::ALL
            .into_iter()
            .find(|k| t.parse::<usize>().ok() == Some(k.runs()))
    }

    /// Taguchi's notation, e.g. `L18(2^1 x 3^7)`.
    pub fn notation(self) -> String {
        match self.capacity() {
            (a, 0) => format!("{self}(2^{a})"),
            (0, b) => format!("{self}(3^{b})"),
            (a, b) => format!("{self}(2^{a} x 3^{b})"),
        }
    }

    /// Builds the table.
    pub fn build(self) -> OrthogonalArray {
        match self {
            ArrayKind::L4 => two_level(self, 2),
            ArrayKind::L8 => two_level(self, 3),
            ArrayKind::L16 => two_level(self, 4),
            ArrayKind::L9 => three_level(self, 2),
            ArrayKind::L27 => three_level(self, 3),
            ArrayKind::L12 => tabulated(self, &L12, &[2; 11]),
            ArrayKind::L18 => tabulated(self, &L18, &[2, 3, 3, 3, 3, 3, 3, 3]),
        }
    }

    /// Whether `twos` two-level and `threes` three-level factors fit.
    pub fn fits(self, twos: usize, threes: usize) -> bool {
        let (a, b) = self.capacity();
        twos <= a && threes <= b
    }
}

impl fmt::Display for ArrayKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.runs())
    }
}

/// The smallest array that holds `twos` two-level and `threes` three-level factors.
pub fn smallest_fitting(twos: usize, threes: usize) -> Option<ArrayKind> {
    ArrayKind::ALL.into_iter().find(|k| k.fits(twos, threes))
}

/// An orthogonal array: `rows[run][column]` is a 0-based level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrthogonalArray {
    pub kind: ArrayKind,
    /// Number of levels of each column (2 or 3).
    pub levels: Vec<u8>,
    pub rows: Vec<Vec<u8>>,
}

impl OrthogonalArray {
    pub fn runs(&self) -> usize {
        self.rows.len()
    }
    pub fn columns(&self) -> usize {
        self.levels.len()
    }
    /// Column `c` over all runs.
    pub fn column(&self, c: usize) -> Vec<u8> {
        self.rows.iter().map(|r| r[c]).collect()
    }
    /// Counts of each level pair `(i, j)` of columns `a` and `b`, `counts[i][j]`.
    pub fn pair_counts(&self, a: usize, b: usize) -> Vec<Vec<usize>> {
        let mut counts = vec![vec![0usize; self.levels[b] as usize]; self.levels[a] as usize];
        for r in &self.rows {
            counts[r[a] as usize][r[b] as usize] += 1;
        }
        counts
    }
    /// Whether every pair of columns holds every level pair equally often.
    pub fn is_orthogonal(&self) -> bool {
        (0..self.columns()).all(|a| {
            (a + 1..self.columns()).all(|b| {
                let counts = self.pair_counts(a, b);
                let want = self.runs() / (self.levels[a] as usize * self.levels[b] as usize);
                counts.iter().flatten().all(|&c| c == want)
            })
        })
    }
}

fn two_level(kind: ArrayKind, p: u32) -> OrthogonalArray {
    let n = 1usize << p;
    let rows = (0..n)
        .map(|r| {
            // Basic column 2^i is bit (p-1-i) of the run number: reverse the bits of r.
            let rev = (0..p).fold(0usize, |acc, i| acc | (((r >> i) & 1) << (p - 1 - i)));
            (1..n).map(|c| ((c & rev).count_ones() % 2) as u8).collect()
        })
        .collect();
    OrthogonalArray {
        kind,
        levels: vec![2; n - 1],
        rows,
    }
}

/// Coefficient vectors over GF(3) in Taguchi's column order: grouped by the highest basic
/// column used (coefficient 1), the lower coefficients counting up with the first fastest.
fn gf3_columns(p: usize) -> Vec<Vec<u8>> {
    let mut cols = Vec::new();
    for top in 0..p {
        let lower = 3usize.pow(top as u32);
        for m in 0..lower {
            let mut v = vec![0u8; p];
            let mut x = m;
            // The first basic column varies fastest: (1,0) before (2,0) ... as in L9's
            // columns 3 = A+B and 4 = 2A+B.
            for coef in v.iter_mut().take(top) {
                *coef = (x % 3) as u8;
                x /= 3;
            }
            v[top] = 1;
            cols.push(v);
        }
    }
    cols
}

fn three_level(kind: ArrayKind, p: usize) -> OrthogonalArray {
    let n = 3usize.pow(p as u32);
    let cols = gf3_columns(p);
    let rows = (0..n)
        .map(|r| {
            // Digits of r, most significant first: digit[0] is basic column A.
            let digits: Vec<u8> = (0..p)
                .map(|i| ((r / 3usize.pow((p - 1 - i) as u32)) % 3) as u8)
                .collect();
            cols.iter()
                .map(|v| {
                    (v.iter()
                        .zip(&digits)
                        .map(|(a, b)| (a * b) as usize)
                        .sum::<usize>()
                        % 3) as u8
                })
                .collect()
        })
        .collect();
    OrthogonalArray {
        kind,
        levels: vec![3; cols.len()],
        rows,
    }
}

fn tabulated<const C: usize>(kind: ArrayKind, t: &[[u8; C]], levels: &[u8]) -> OrthogonalArray {
    OrthogonalArray {
        kind,
        levels: levels.to_vec(),
        rows: t
            .iter()
            .map(|r| r.iter().map(|&v| v - 1).collect())
            .collect(),
    }
}

/// L12(2^11), Taguchi's standard table (levels 1-based as printed). A Plackett-Burman design:
/// interactions are spread over all columns, so it is for main effects only.
const L12: [[u8; 11]; 12] = [
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2],
    [1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2],
    [1, 2, 1, 2, 2, 1, 2, 2, 1, 1, 2],
    [1, 2, 2, 1, 2, 2, 1, 2, 1, 2, 1],
    [1, 2, 2, 2, 1, 2, 2, 1, 2, 1, 1],
    [2, 1, 2, 2, 1, 1, 2, 2, 1, 2, 1],
    [2, 1, 2, 1, 2, 2, 2, 1, 1, 1, 2],
    [2, 1, 1, 2, 2, 2, 1, 2, 2, 1, 1],
    [2, 2, 2, 1, 1, 1, 1, 2, 2, 1, 2],
    [2, 2, 1, 2, 1, 2, 1, 1, 1, 2, 2],
    [2, 2, 1, 1, 2, 1, 2, 1, 2, 2, 1],
];

/// L18(2^1 x 3^7), Taguchi's standard table (levels 1-based as printed).
const L18: [[u8; 8]; 18] = [
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 2, 2, 2, 2, 2, 2],
    [1, 1, 3, 3, 3, 3, 3, 3],
    [1, 2, 1, 1, 2, 2, 3, 3],
    [1, 2, 2, 2, 3, 3, 1, 1],
    [1, 2, 3, 3, 1, 1, 2, 2],
    [1, 3, 1, 2, 1, 3, 2, 3],
    [1, 3, 2, 3, 2, 1, 3, 1],
    [1, 3, 3, 1, 3, 2, 1, 2],
    [2, 1, 1, 3, 3, 2, 2, 1],
    [2, 1, 2, 1, 1, 3, 3, 2],
    [2, 1, 3, 2, 2, 1, 1, 3],
    [2, 2, 1, 2, 3, 1, 3, 2],
    [2, 2, 2, 3, 1, 2, 1, 3],
    [2, 2, 3, 1, 2, 3, 2, 1],
    [2, 3, 1, 3, 2, 3, 1, 2],
    [2, 3, 2, 1, 3, 1, 2, 3],
    [2, 3, 3, 2, 1, 2, 3, 1],
];

/// The level a factor with `factor_levels` levels takes where its column shows `level`:
/// under dummy treatment (a two-level factor on a three-level column) the column's third
/// level repeats the factor's first.
pub fn dummy_level(level: u8, factor_levels: usize) -> usize {
    let l = level as usize;
    if l >= factor_levels {
        0
    } else {
        l
    }
}

/// Whether `twos` two-level and `threes` three-level factors fit `kind` when two-level
/// factors may also take free three-level columns (dummy treatment).
pub fn fits_with_dummy(kind: ArrayKind, twos: usize, threes: usize) -> bool {
    let (a, b) = kind.capacity();
    threes <= b && twos <= a + (b - threes)
}

/// Why factors cannot be placed on an array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    #[error("factor {index} has {levels} levels; the laboratory's arrays take 2 or 3")]
    BadLevels { index: usize, levels: usize },
    #[error(
        "{array} holds {cap2} two-level and {cap3} three-level factors, but the experiment has {twos} two-level and {threes} three-level ones; {hint}"
    )]
    DoesNotFit {
        array: String,
        cap2: usize,
        cap3: usize,
        twos: usize,
        threes: usize,
        hint: String,
    },
    #[error("no array fits {twos} two-level and {threes} three-level factors: the largest are L16(2^15), L27(3^13) and L18(2^1 x 3^7)")]
    NoneFits { twos: usize, threes: usize },
}

/// Places factors (given by their level counts, 2 or 3) on columns of `kind` — or of the
/// smallest array that fits when `kind` is `None` — in order: two-level factors on the
/// two-level columns from the left, three-level factors likewise. Returns the array and the
/// column of each factor.
pub fn assign(
    kind: Option<ArrayKind>,
    factor_levels: &[usize],
) -> Result<(OrthogonalArray, Vec<usize>), AssignError> {
    for (index, &levels) in factor_levels.iter().enumerate() {
        if levels != 2 && levels != 3 {
            return Err(AssignError::BadLevels { index, levels });
        }
    }
    let twos = factor_levels.iter().filter(|&&l| l == 2).count();
    let threes = factor_levels.len() - twos;
    let best = smallest_fitting(twos, threes);
    let kind = match kind {
        Some(k) if k.fits(twos, threes) => k,
        Some(k) => {
            let (cap2, cap3) = k.capacity();
            let hint = match best {
                Some(b) => format!("use {} instead", b.notation()),
                None => "no array of the laboratory fits them all".to_string(),
            };
            return Err(AssignError::DoesNotFit {
                array: k.notation(),
                cap2,
                cap3,
                twos,
                threes,
                hint,
            });
        }
        None => best.ok_or(AssignError::NoneFits { twos, threes })?,
    };
    let oa = kind.build();
    let mut free2 = (0..oa.columns()).filter(|&c| oa.levels[c] == 2);
    let mut free3 = (0..oa.columns()).filter(|&c| oa.levels[c] == 3);
    let cols = factor_levels
        .iter()
        .map(|&l| if l == 2 { free2.next() } else { free3.next() }.expect("capacity checked above"))
        .collect();
    Ok((oa, cols))
}

/// Like [`assign`], but a two-level factor that finds no free two-level column takes a free
/// three-level column with a dummy level (its level 1 repeated; [`dummy_level`]). Without a
/// given array it picks the array with the fewest runs that fits this way, preferring one that
/// needs no dummy at equal size. Returns the array and each factor's column; a factor is
/// dummy-treated where its level count is below its column's.
pub fn design(
    kind: Option<ArrayKind>,
    factor_levels: &[usize],
) -> Result<(OrthogonalArray, Vec<usize>), AssignError> {
    for (index, &levels) in factor_levels.iter().enumerate() {
        if levels != 2 && levels != 3 {
            return Err(AssignError::BadLevels { index, levels });
        }
    }
    let twos = factor_levels.iter().filter(|&&l| l == 2).count();
    let threes = factor_levels.len() - twos;
    let best = ArrayKind::ALL
        .into_iter()
        .find(|k| fits_with_dummy(*k, twos, threes));
    let kind = match kind {
        Some(k) if fits_with_dummy(k, twos, threes) => k,
        Some(k) => {
            let (cap2, cap3) = k.capacity();
            let hint = match best {
                Some(b) => format!("use {} instead", b.notation()),
                None => "no array of the laboratory fits them all".to_string(),
            };
            return Err(AssignError::DoesNotFit {
                array: k.notation(),
                cap2,
                cap3,
                twos,
                threes,
                hint,
            });
        }
        None => best.ok_or(AssignError::NoneFits { twos, threes })?,
    };
    let oa = kind.build();
    let mut free2: Vec<usize> = (0..oa.columns()).filter(|&c| oa.levels[c] == 2).collect();
    let mut free3: Vec<usize> = (0..oa.columns()).filter(|&c| oa.levels[c] == 3).collect();
    free2.reverse();
    free3.reverse();
    // Three-level factors first take the leftmost three-level columns; then the two-level
    // factors take the two-level columns and, once those run out, the remaining three-level
    // ones.
    let mut cols = vec![usize::MAX; factor_levels.len()];
    for (f, &l) in factor_levels.iter().enumerate() {
        if l == 3 {
            cols[f] = free3.pop().expect("capacity checked above");
        }
    }
    for (f, &l) in factor_levels.iter().enumerate() {
        if l == 2 {
            cols[f] = free2
                .pop()
                .or_else(|| free3.pop())
                .expect("capacity checked above");
        }
    }
    Ok((oa, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_balanced(kind: ArrayKind) {
        let oa = kind.build();
        assert_eq!(oa.runs(), kind.runs());
        let (a, b) = kind.capacity();
        assert_eq!(oa.columns(), a + b);
        assert_eq!(oa.levels.iter().filter(|&&l| l == 2).count(), a);
        for r in &oa.rows {
            assert_eq!(r.len(), oa.columns());
            for (c, &v) in r.iter().enumerate() {
                assert!(v < oa.levels[c], "{kind}: level out of range");
            }
        }
        // Every pair of columns (the L18's two-level column with each three-level one, and
        // every pair of three-level ones) holds every level pair equally often.
        for x in 0..oa.columns() {
            for y in x + 1..oa.columns() {
                let counts = oa.pair_counts(x, y);
                let want = oa.runs() / (oa.levels[x] as usize * oa.levels[y] as usize);
                for row in &counts {
                    for &c in row {
                        assert_eq!(c, want, "{kind}: columns {} and {}", x + 1, y + 1);
                    }
                }
            }
        }
        assert!(oa.is_orthogonal());
        // No two columns are equal (a repeated column would still pass the pair test for
        // other pairs but is not a valid design).
        for x in 0..oa.columns() {
            for y in x + 1..oa.columns() {
                assert_ne!(oa.column(x), oa.column(y), "{kind}");
            }
        }
    }

    #[test]
    fn l4_balanced() {
        check_balanced(ArrayKind::L4);
    }
    #[test]
    fn l8_balanced() {
        check_balanced(ArrayKind::L8);
    }
    #[test]
    fn l9_balanced() {
        check_balanced(ArrayKind::L9);
    }
    #[test]
    fn l12_balanced() {
        check_balanced(ArrayKind::L12);
    }
    #[test]
    fn l16_balanced() {
        check_balanced(ArrayKind::L16);
    }
    #[test]
    fn l18_balanced() {
        check_balanced(ArrayKind::L18);
    }
    #[test]
    fn l27_balanced() {
        check_balanced(ArrayKind::L27);
    }

    fn one_based(oa: &OrthogonalArray) -> Vec<Vec<u8>> {
        oa.rows
            .iter()
            .map(|r| r.iter().map(|v| v + 1).collect())
            .collect()
    }

    #[test]
    fn l8_and_l9_match_the_standard_tables() {
        // Taguchi's standard L8 and L9 (as printed in every Taguchi-methods text, e.g. the
        // appendix tables of Phadke, "Quality Engineering Using Robust Design", 1989),
        // written out here by hand.
        let l8 = [
            [1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 2, 2, 2, 2],
            [1, 2, 2, 1, 1, 2, 2],
            [1, 2, 2, 2, 2, 1, 1],
            [2, 1, 2, 1, 2, 1, 2],
            [2, 1, 2, 2, 1, 2, 1],
            [2, 2, 1, 1, 2, 2, 1],
            [2, 2, 1, 2, 1, 1, 2],
        ];
        let l9 = [
            [1, 1, 1, 1],
            [1, 2, 2, 2],
            [1, 3, 3, 3],
            [2, 1, 2, 3],
            [2, 2, 3, 1],
            [2, 3, 1, 2],
            [3, 1, 3, 2],
            [3, 2, 1, 3],
            [3, 3, 2, 1],
        ];
        let want8: Vec<Vec<u8>> = l8.iter().map(|r| r.to_vec()).collect();
        let want9: Vec<Vec<u8>> = l9.iter().map(|r| r.to_vec()).collect();
        assert_eq!(one_based(&ArrayKind::L8.build()), want8);
        assert_eq!(one_based(&ArrayKind::L9.build()), want9);
        // Taguchi's standard L4.
        let l4: Vec<Vec<u8>> = vec![vec![1, 1, 1], vec![1, 2, 2], vec![2, 1, 2], vec![2, 2, 1]];
        assert_eq!(one_based(&ArrayKind::L4.build()), l4);
    }

    #[test]
    fn dummy_treatment() {
        // 1 two-level + 3 three-level factors: L9 with the two-level factor dummy-treated
        // (9 runs) rather than L18.
        let (oa, cols) = design(None, &[2, 3, 3, 3]).unwrap();
        assert_eq!(oa.kind, ArrayKind::L9);
        assert_eq!(cols, vec![3, 0, 1, 2]);
        // Its levels over the nine runs: column 4 is 1,2,3,3,1,2,2,3,1 -> 1,2,1,1,1,2,2,1,1:
        // level 1 six times, level 2 three times, and with every level of every other
        // column in the same 2:1 proportion.
        let dl: Vec<usize> = oa.rows.iter().map(|r| dummy_level(r[3], 2)).collect();
        assert_eq!(dl.iter().filter(|&&l| l == 0).count(), 6);
        for c in 0..3 {
            for lv in 0..3u8 {
                let n1 = oa
                    .rows
                    .iter()
                    .zip(&dl)
                    .filter(|(r, &d)| r[c] == lv && d == 0)
                    .count();
                assert_eq!(n1, 2, "column {c} level {lv}");
            }
        }
        // Strict fits are kept: three two-level factors still go on L4.
        assert_eq!(design(None, &[2, 2, 2]).unwrap().0.kind, ArrayKind::L4);
        // 3 two-level + 3 three-level: L18 (one on the two-level column, two dummy-treated).
        let (oa, cols) = design(None, &[2, 2, 2, 3, 3, 3]).unwrap();
        assert_eq!(oa.kind, ArrayKind::L18);
        assert_eq!(cols, vec![0, 4, 5, 1, 2, 3]);
        // Too many: 14 two-level factors fit L16 but with 3 three-level ones nothing fits.
        let e = design(None, &[[2; 14].as_slice(), &[3; 3]].concat()).unwrap_err();
        assert_eq!(
            e,
            AssignError::NoneFits {
                twos: 14,
                threes: 3
            }
        );
        let e = design(Some(ArrayKind::L8), &[2, 3]).unwrap_err();
        assert!(e.to_string().contains("use L9(3^4)"), "{e}");
    }

    #[test]
    fn parse_and_notation() {
        assert_eq!(ArrayKind::parse("L18"), Some(ArrayKind::L18));
        assert_eq!(ArrayKind::parse("l9"), Some(ArrayKind::L9));
        assert_eq!(ArrayKind::parse("27"), Some(ArrayKind::L27));
        assert_eq!(ArrayKind::parse("L10"), None);
        assert_eq!(ArrayKind::L18.notation(), "L18(2^1 x 3^7)");
        assert_eq!(ArrayKind::L8.notation(), "L8(2^7)");
    }

    #[test]
    fn assignment_picks_the_smallest_array() {
        let (oa, cols) = assign(None, &[2, 2, 2]).unwrap();
        assert_eq!(oa.kind, ArrayKind::L4);
        assert_eq!(cols, vec![0, 1, 2]);
        let (oa, _) = assign(None, &[2, 2, 2, 2]).unwrap();
        assert_eq!(oa.kind, ArrayKind::L8);
        let (oa, cols) = assign(None, &[3, 3, 3]).unwrap();
        assert_eq!(oa.kind, ArrayKind::L9);
        assert_eq!(cols, vec![0, 1, 2]);
        let (oa, cols) = assign(None, &[3, 2, 3]).unwrap();
        assert_eq!(oa.kind, ArrayKind::L18);
        assert_eq!(cols, vec![1, 0, 2]);
        let (oa, _) = assign(None, &[3; 5]).unwrap();
        assert_eq!(oa.kind, ArrayKind::L18);
        let (oa, _) = assign(None, &[3; 8]).unwrap();
        assert_eq!(oa.kind, ArrayKind::L27);
        let (oa, _) = assign(None, &[2; 12]).unwrap();
        assert_eq!(oa.kind, ArrayKind::L16);
    }

    #[test]
    fn assignment_errors_name_the_array_that_fits() {
        let e = assign(Some(ArrayKind::L8), &[3, 3]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("L8(2^7)"), "{msg}");
        assert!(msg.contains("use L9(3^4)"), "{msg}");
        let e = assign(Some(ArrayKind::L9), &[2, 3, 3, 3, 3]).unwrap_err();
        assert!(e.to_string().contains("use L18(2^1 x 3^7)"), "{e}");
        let e = assign(None, &[2, 2, 3]).unwrap_err();
        assert_eq!(e, AssignError::NoneFits { twos: 2, threes: 1 });
        let e = assign(None, &[2, 4]).unwrap_err();
        assert_eq!(
            e,
            AssignError::BadLevels {
                index: 1,
                levels: 4
            }
        );
        let e = assign(Some(ArrayKind::L4), &[2, 2, 3]).unwrap_err();
        assert!(e.to_string().contains("no array"), "{e}");
    }
}
