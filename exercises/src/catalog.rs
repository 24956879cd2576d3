//! The lesson catalog, `exercises/lessons.toml`, compiled into every binary so that the runner
//! and the lessons agree on ids, names and expected verdicts wherever they are run from.

use serde::{Deserialize, Serialize};

/// The catalog file's text, as built into this binary.
pub const CATALOG_TOML: &str = include_str!("../lessons.toml");

/// The verdict a lesson binary gives, graded by what the kernel showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The lesson's problem showed up (sockets piled up, an error, bytes lost).
    Leak,
    /// It did not.
    Clean,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Verdict::Leak => "leak",
            Verdict::Clean => "clean",
        })
    }
}

/// One lesson binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binary {
    pub name: String,
    pub expect: Verdict,
    /// The binary a student edits until `tcplab check` grades it clean.
    #[serde(default)]
    pub student: bool,
}

impl Binary {
    /// The part of the name after the lesson id and slug: `leak` in `03-close-wait-leak`.
    pub fn variant(&self) -> &str {
        self.name.rsplit('-').next().unwrap_or(&self.name)
    }
}

/// One lesson.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lesson {
    pub id: String,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub chapter: String,
    pub notebook: String,
    pub hints: Vec<String>,
    /// Whether the lesson has a churn phase (`--churn-secs`, `--churn-rate`).
    #[serde(default)]
    pub churn: bool,
    #[serde(rename = "binary")]
    pub binaries: Vec<Binary>,
}

impl Lesson {
    /// The binary students edit (the first with `student = true`, else the first one).
    pub fn student_binary(&self) -> &Binary {
        self.binaries
            .iter()
            .find(|b| b.student)
            .unwrap_or(&self.binaries[0])
    }

    /// The binary whose expected verdict is clean: the reference solution.
    pub fn fixed_binary(&self) -> Option<&Binary> {
        self.binaries.iter().find(|b| b.expect == Verdict::Clean)
    }

    /// A binary by full name, or by variant suffix (`leak`, `fixed`).
    pub fn binary(&self, name_or_variant: &str) -> Option<&Binary> {
        self.binaries
            .iter()
            .find(|b| b.name == name_or_variant)
            .or_else(|| {
                self.binaries
                    .iter()
                    .find(|b| b.name.ends_with(&format!("-{name_or_variant}")))
            })
    }
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub format: u32,
    #[serde(rename = "lesson")]
    pub lessons: Vec<Lesson>,
}

impl Catalog {
    /// The ids of the lessons with a churn phase.
    pub fn churn_lessons(&self) -> Vec<&str> {
        self.lessons
            .iter()
            .filter(|l| l.churn)
            .map(|l| l.id.as_str())
            .collect()
    }

    /// The catalog built into this binary.
    pub fn builtin() -> Catalog {
        // The file is checked by the tests; a broken catalog cannot be shipped.
        Catalog::parse(CATALOG_TOML).expect("exercises/lessons.toml is valid (checked by tests)")
    }

    /// Parse catalog text.
    pub fn parse(text: &str) -> Result<Catalog, toml::de::Error> {
        toml::from_str(text)
    }

    /// A lesson by id (`3`, `03`), by slug, or by the name of one of its binaries.
    pub fn lesson(&self, key: &str) -> Option<&Lesson> {
        let key = key.trim();
        let padded = if key.len() == 1 && key.chars().all(|c| c.is_ascii_digit()) {
            format!("0{key}")
        } else {
            key.to_string()
        };
        self.lessons
            .iter()
            .find(|l| l.id == padded || l.slug == key || l.binaries.iter().any(|b| b.name == key))
    }

    /// A lesson by key, or an error that lists every lesson.
    pub fn require(&self, key: &str) -> anyhow::Result<&Lesson> {
        self.lesson(key).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown lesson {key:?}; lessons are: {}",
                self.lessons
                    .iter()
                    .map(|l| format!("{} ({})", l.id, l.slug))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// The lesson and catalog entry of a binary.
    pub fn binary(&self, name: &str) -> Option<(&Lesson, &Binary)> {
        self.lessons
            .iter()
            .find_map(|l| l.binaries.iter().find(|b| b.name == name).map(|b| (l, b)))
    }

    /// Every binary name, in catalog order.
    pub fn binary_names(&self) -> Vec<&str> {
        self.lessons
            .iter()
            .flat_map(|l| l.binaries.iter().map(|b| b.name.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_is_consistent() {
        let c = Catalog::builtin();
        assert_eq!(c.lessons.len(), 11);
        for (i, l) in c.lessons.iter().enumerate() {
            assert_eq!(l.id, format!("{:02}", i + 1));
            assert!(!l.hints.is_empty(), "lesson {} has no hints", l.id);
            assert!(l.chapter.starts_with("book/src/"));
            assert!(l.notebook.starts_with("notebooks/"));
            for b in &l.binaries {
                assert!(b.name.starts_with(&format!("{}-", l.id)), "{}", b.name);
            }
        }
    }

    #[test]
    fn lookups() {
        let c = Catalog::builtin();
        assert_eq!(c.lesson("3").unwrap().id, "03");
        assert_eq!(c.lesson("close-wait").unwrap().id, "03");
        assert_eq!(c.lesson("03-close-wait-fixed").unwrap().id, "03");
        let l = c.lesson("03").unwrap();
        assert_eq!(l.binary("leak").unwrap().name, "03-close-wait-leak");
        assert_eq!(
            l.binary("03-close-wait-fixed").unwrap().expect,
            Verdict::Clean
        );
        let err = c.require("99").unwrap_err().to_string();
        assert!(err.contains("03 (close-wait)"), "{err}");
    }
}
