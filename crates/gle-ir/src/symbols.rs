//! The model's global namespace: every named declaration, its kind and where it was written.

use gle_syntax::Span;
use std::collections::HashMap;

/// What kind of declaration a global name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymKind {
    /// `const`
    Const,
    /// `fn`
    Function,
    /// `neuron`
    Neuron,
    /// `input`
    Input,
    /// `dataset`
    Dataset,
    /// `population`
    Population,
    /// `connect`
    Projection,
}

impl SymKind {
    /// The kind's name ("population").
    pub fn name(self) -> &'static str {
        match self {
            SymKind::Const => "constant",
            SymKind::Function => "function",
            SymKind::Neuron => "neuron type",
            SymKind::Input => "input",
            SymKind::Dataset => "dataset",
            SymKind::Population => "population",
            SymKind::Projection => "projection",
        }
    }

    /// The kind's name with an article ("a population").
    pub fn article(self) -> String {
        let n = self.name();
        let a = if n.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{a} {n}")
    }
}

/// One global name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Symbol {
    /// Its kind.
    pub kind: SymKind,
    /// Index among the declarations of that kind.
    pub index: usize,
    /// Where the name was written.
    pub span: Span,
}

/// All global names of a model.
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    map: HashMap<String, Symbol>,
    order: Vec<String>,
    counts: HashMap<&'static str, usize>,
}

impl Symbols {
    /// Adds `name`; returns the earlier symbol if the name is taken.
    pub fn insert(&mut self, name: &str, kind: SymKind, span: Span) -> Result<usize, Symbol> {
        if let Some(s) = self.map.get(name) {
            return Err(*s);
        }
        let count = self.counts.entry(kind.name()).or_default();
        let index = *count;
        *count += 1;
        self.map.insert(name.to_string(), Symbol { kind, index, span });
        self.order.push(name.to_string());
        Ok(index)
    }

    /// The symbol named `name`.
    pub fn get(&self, name: &str) -> Option<&Symbol> {
        self.map.get(name)
    }

    /// Names of all symbols of `kind`, in declaration order.
    pub fn names_of(&self, kind: SymKind) -> impl Iterator<Item = &str> {
        self.order
            .iter()
            .filter(move |n| self.map[n.as_str()].kind == kind)
            .map(String::as_str)
    }
}
