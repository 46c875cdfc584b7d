//! Einsum equations: parsed once at import into an [`Equation`], resolved against the
//! operand shapes (which fixes what `...` stands for) into a [`Resolved`] contraction that
//! the interpreter evaluates and the lowering turns into kernels.
//!
//! Grammar (ONNX Einsum, numpy's `einsum`): terms of letters `a-z`/`A-Z` and at most one
//! `...` each, separated by `,`, optionally followed by `->` and an output term; spaces are
//! ignored.
//! - A letter repeated within one term takes the diagonal (`ii->i`); a letter in several
//!   terms is the same index (sizes must agree); a letter missing from the output is
//!   summed over.
//! - `...` stands for the leading dims not named by letters; the ellipsis dims of all
//!   operands broadcast numpy-style, aligned to the right.
//! - Without `->` (implicit form) the output is the ellipsis dims, then the letters that
//!   occur exactly once in the whole equation, in ASCII order (numpy's rule).
//! - An explicit output may leave out `...`: the ellipsis dims are then summed over too.

use std::fmt;

/// One subscript of a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Label {
    /// An ASCII letter.
    Letter(u8),
    /// `...`: every dim the letters do not name.
    Ellipsis,
}

/// A parsed equation with the output always explicit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Equation {
    pub inputs: Vec<Vec<Label>>,
    pub output: Vec<Label>,
}

/// An equation resolved against concrete operand shapes. Every distinct index (a letter,
/// or one of the broadcast ellipsis dims) is a label `0..sizes.len()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The extent of each label.
    pub sizes: Vec<usize>,
    /// Per operand, the label of each of its dims.
    pub inputs: Vec<Vec<usize>>,
    /// The labels of the output dims, distinct.
    pub output: Vec<usize>,
}

fn parse_term(term: &str, equation: &str) -> Result<Vec<Label>, String> {
    let mut labels = Vec::new();
    let b = term.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_alphabetic() => {
                labels.push(Label::Letter(c));
                i += 1;
            }
            b'.' => {
                if !term[i..].starts_with("...") {
                    return Err(format!(
                        "equation '{equation}': a '.' that is not part of '...' in term '{term}'"
                    ));
                }
                if labels.contains(&Label::Ellipsis) {
                    return Err(format!(
                        "equation '{equation}': term '{term}' has more than one '...'"
                    ));
                }
                labels.push(Label::Ellipsis);
                i += 3;
            }
            _ => {
                // Only ASCII reaches here as a byte of a letter; report the whole char.
                let c = term[i..].chars().next().unwrap_or('?');
                return Err(format!(
                    "equation '{equation}': '{c}' is not a subscript (letters a-z, A-Z and '...')"
                ));
            }
        }
    }
    Ok(labels)
}

impl Equation {
    /// Parses an equation such as `bhqd,bhkd->bhqk`, `...ii->...i` or `ij,jk`.
    pub fn parse(equation: &str) -> Result<Equation, String> {
        let s: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match s.find("->") {
            Some(at) => (&s[..at], Some(&s[at + 2..])),
            None => (s.as_str(), None),
        };
        if lhs.contains('-') || lhs.contains('>') || rhs.is_some_and(|r| r.contains("->")) {
            return Err(format!("equation '{equation}': misplaced '->'"));
        }
        let inputs = lhs
            .split(',')
            .map(|t| parse_term(t, equation))
            .collect::<Result<Vec<_>, _>>()?;
        let letters_in = |l: u8| {
            inputs
                .iter()
                .flatten()
                .filter(|&&x| x == Label::Letter(l))
                .count()
        };
        let output = match rhs {
            Some(r) => {
                if r.contains(',') {
                    return Err(format!("equation '{equation}': more than one output term"));
                }
                let out = parse_term(r, equation)?;
                for (i, l) in out.iter().enumerate() {
                    if out[..i].contains(l) {
                        return Err(format!(
                            "equation '{equation}': output subscript '{}' is repeated",
                            label_text(*l)
                        ));
                    }
                    if let Label::Letter(c) = l
                        && letters_in(*c) == 0
                    {
                        return Err(format!(
                            "equation '{equation}': output subscript '{}' is in no input",
                            *c as char
                        ));
                    }
                }
                out
            }
            None => {
                let mut out = Vec::new();
                if inputs.iter().flatten().any(|&l| l == Label::Ellipsis) {
                    out.push(Label::Ellipsis);
                }
                let mut once: Vec<u8> = inputs
                    .iter()
                    .flatten()
                    .filter_map(|l| match l {
                        Label::Letter(c) if letters_in(*c) == 1 => Some(*c),
                        _ => None,
                    })
                    .collect();
                once.sort_unstable();
                out.extend(once.into_iter().map(Label::Letter));
                out
            }
        };
        Ok(Equation { inputs, output })
    }

    /// Resolves the equation against the operand shapes: counts the ellipsis dims,
    /// broadcasts them, and checks that every letter has one size.
    pub fn resolve(&self, shapes: &[&[usize]]) -> Result<Resolved, String> {
        if shapes.len() != self.inputs.len() {
            return Err(format!(
                "equation '{self}' has {} input terms, the node {} inputs",
                self.inputs.len(),
                shapes.len()
            ));
        }
        // Ellipsis dims per operand, and their broadcast extents (right-aligned).
        let mut counts = Vec::with_capacity(shapes.len());
        for (i, (term, shape)) in self.inputs.iter().zip(shapes).enumerate() {
            let letters = term.iter().filter(|&&l| l != Label::Ellipsis).count();
            let has_ellipsis = term.len() != letters;
            if shape.len() < letters || (!has_ellipsis && shape.len() != letters) {
                return Err(format!(
                    "equation '{self}': input {i} has rank {} but its term names {letters} dims{}",
                    shape.len(),
                    if has_ellipsis { " and '...'" } else { "" }
                ));
            }
            counts.push(shape.len() - letters);
        }
        let e = counts.iter().copied().max().unwrap_or(0);
        let mut sizes = vec![1usize; e];
        let mut letter_label: Vec<(u8, usize)> = Vec::new();
        let mut inputs = Vec::with_capacity(shapes.len());
        for (i, (term, shape)) in self.inputs.iter().zip(shapes).enumerate() {
            let mut dims = Vec::with_capacity(shape.len());
            let mut d = 0;
            for &l in term {
                match l {
                    Label::Ellipsis => {
                        let first = e - counts[i];
                        for (j, size) in sizes.iter_mut().enumerate().take(e).skip(first) {
                            let n = shape[d];
                            if n != *size && n != 1 && *size != 1 {
                                return Err(format!(
                                    "equation '{self}': the '...' dims of the inputs do not broadcast ({n} vs {size})"
                                ));
                            }
                            if n != 1 {
                                *size = n;
                            }
                            dims.push(j);
                            d += 1;
                        }
                    }
                    Label::Letter(c) => {
                        let n = shape[d];
                        let label = match letter_label.iter().find(|(x, _)| *x == c) {
                            Some(&(_, at)) => {
                                if sizes[at] != n {
                                    return Err(format!(
                                        "equation '{self}': subscript '{}' has size {} and {n}",
                                        c as char, sizes[at]
                                    ));
                                }
                                at
                            }
                            None => {
                                sizes.push(n);
                                letter_label.push((c, sizes.len() - 1));
                                sizes.len() - 1
                            }
                        };
                        dims.push(label);
                        d += 1;
                    }
                }
            }
            inputs.push(dims);
        }
        let mut output = Vec::new();
        for &l in &self.output {
            match l {
                Label::Ellipsis => output.extend(0..e),
                Label::Letter(c) => match letter_label.iter().find(|(x, _)| *x == c) {
                    Some(&(_, at)) => output.push(at),
                    None => {
                        return Err(format!(
                            "equation '{self}': output subscript '{}' is in no input",
                            c as char
                        ));
                    }
                },
            }
        }
        Ok(Resolved {
            sizes,
            inputs,
            output,
        })
    }
}

fn label_text(l: Label) -> String {
    match l {
        Label::Letter(c) => (c as char).to_string(),
        Label::Ellipsis => "...".into(),
    }
}

/// The explicit form: `bhqd,bhkd->bhqk`.
impl fmt::Display for Equation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let term = |t: &[Label]| t.iter().map(|&l| label_text(l)).collect::<String>();
        let ins: Vec<String> = self.inputs.iter().map(|t| term(t)).collect();
        write!(f, "{}->{}", ins.join(","), term(&self.output))
    }
}

impl Resolved {
    /// The output's shape.
    pub fn output_shape(&self) -> Vec<usize> {
        self.output.iter().map(|&l| self.sizes[l]).collect()
    }

    /// The labels summed over: in some input, not in the output, in label order.
    pub fn summed(&self) -> Vec<usize> {
        (0..self.sizes.len())
            .filter(|l| !self.output.contains(l) && self.inputs.iter().flatten().any(|x| x == l))
            .collect()
    }

    /// For operand `i` stored dense row-major, the element stride of each label (0 for
    /// labels it lacks and for its broadcast size-1 ellipsis dims). A label on several of
    /// its dims (a diagonal) gets the sum of their strides.
    pub fn label_strides(&self, i: usize, shape: &[usize]) -> Vec<usize> {
        let mut out = vec![0; self.sizes.len()];
        let mut s = 1;
        for (d, &n) in shape.iter().enumerate().rev() {
            let l = self.inputs[i][d];
            if n == self.sizes[l] {
                out[l] += s;
            }
            s *= n;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> Vec<Label> {
        parse_term(s, s).unwrap()
    }

    fn resolve(eq: &str, shapes: &[&[usize]]) -> Resolved {
        Equation::parse(eq).unwrap().resolve(shapes).unwrap()
    }

    #[test]
    fn explicit_forms() {
        let e = Equation::parse("bhqd,bhkd->bhqk").unwrap();
        assert_eq!(e.inputs, vec![l("bhqd"), l("bhkd")]);
        assert_eq!(e.output, l("bhqk"));
        assert_eq!(e.to_string(), "bhqd,bhkd->bhqk");
        assert_eq!(Equation::parse("ij->").unwrap().output, vec![]);
        assert_eq!(
            Equation::parse(" ...ii ->...i").unwrap().to_string(),
            "...ii->...i"
        );
    }

    #[test]
    fn implicit_output_is_the_letters_used_once_in_ascii_order() {
        assert_eq!(Equation::parse("ij,jk").unwrap().to_string(), "ij,jk->ik");
        assert_eq!(Equation::parse("ba").unwrap().to_string(), "ba->ab");
        assert_eq!(Equation::parse("ii").unwrap().to_string(), "ii->");
        assert_eq!(Equation::parse("i,i").unwrap().to_string(), "i,i->");
        assert_eq!(Equation::parse("bB").unwrap().to_string(), "bB->Bb");
        assert_eq!(
            Equation::parse("...ij,...jk").unwrap().to_string(),
            "...ij,...jk->...ik"
        );
    }

    #[test]
    fn malformed_equations_are_errors() {
        for bad in [
            "ij,jk->ik,i",
            "ij->ii",
            "ij->k",
            "i.j->ij",
            "....i->i",
            "...i...->i",
            "i1->i",
            "ij-jk",
            "i>j",
            "ij->i->j",
            "ié->i",
        ] {
            let err = Equation::parse(bad).expect_err(bad);
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn resolution_labels_and_sizes() {
        let r = resolve("bhqd,bhkd->bhqk", &[&[2, 3, 4, 5], &[2, 3, 6, 5]]);
        assert_eq!(r.sizes, vec![2, 3, 4, 5, 6]);
        assert_eq!(r.inputs, vec![vec![0, 1, 2, 3], vec![0, 1, 4, 3]]);
        assert_eq!(r.output, vec![0, 1, 2, 4]);
        assert_eq!(r.output_shape(), vec![2, 3, 4, 6]);
        assert_eq!(r.summed(), vec![3]);
        assert_eq!(r.label_strides(1, &[2, 3, 6, 5]), vec![90, 30, 0, 1, 5]);
    }

    #[test]
    fn diagonal_strides_add_up() {
        let r = resolve("bii->bi", &[&[2, 3, 3]]);
        assert_eq!(r.sizes, vec![2, 3]);
        assert_eq!(r.label_strides(0, &[2, 3, 3]), vec![9, 4]);
    }

    #[test]
    fn ellipsis_dims_broadcast_from_the_right() {
        let r = resolve("...ij,...jk->...ik", &[&[2, 1, 3, 4], &[5, 4, 6]]);
        assert_eq!(r.sizes, vec![2, 5, 3, 4, 6]);
        assert_eq!(r.inputs, vec![vec![0, 1, 2, 3], vec![1, 3, 4]]);
        assert_eq!(r.output_shape(), vec![2, 5, 3, 6]);
        // The size-1 ellipsis dim of the first input broadcasts: stride 0.
        assert_eq!(r.label_strides(0, &[2, 1, 3, 4]), vec![12, 0, 4, 1, 0]);
        // No ellipsis dims at all.
        let r = resolve("...i->...", &[&[7]]);
        assert_eq!(r.output_shape(), Vec::<usize>::new());
        // Left out of an explicit output: summed.
        let r = resolve("...i->i", &[&[2, 7]]);
        assert_eq!(r.summed(), vec![0]);
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        let e = Equation::parse("ij,jk->ik").unwrap();
        assert!(e.resolve(&[&[2, 3], &[4, 5]]).unwrap_err().contains("'j'"));
        assert!(e.resolve(&[&[2, 3]]).unwrap_err().contains("2 input terms"));
        assert!(
            e.resolve(&[&[2, 3, 1], &[3, 5]])
                .unwrap_err()
                .contains("rank 3")
        );
        let e = Equation::parse("ii->i").unwrap();
        assert!(e.resolve(&[&[2, 3]]).is_err());
        let e = Equation::parse("...i,...i->...i").unwrap();
        assert!(
            e.resolve(&[&[2, 3], &[4, 3]])
                .unwrap_err()
                .contains("broadcast")
        );
    }
}
