//! The lesson catalog, `exercises/lessons.toml`, compiled into every binary so that the runner
//! and the lessons agree on ids, names and expected verdicts wherever they are run from.

use serde::{Deserialize, Serialize};

/// The catalog file's text, as built into this binary.
pub const CATALOG_TOML: &str = include_str!("../../lessons.toml");

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
    /// The neutral `// TODO` a student's copy gets where the shipped file has its `// LESSON:`
    /// lines (lessons with a student binary only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub todo: Option<String>,
    /// Whether the lesson has a churn phase (`--churn-secs`, `--churn-rate`).
    #[serde(default)]
    pub churn: bool,
    /// Whether the lesson is about what crosses the wire (a RST, a challenge ACK): it
    /// captures its port on every run, not only with `--pcap`, and grades on the segments.
    #[serde(default)]
    pub wire: bool,
    #[serde(rename = "binary")]
    pub binaries: Vec<Binary>,
}

impl Lesson {
    /// The shipped binary students start from (`student = true`), if the lesson has one.
    /// A lesson without one (02) is "read and run": nothing to edit, no check credit.
    pub fn student_binary(&self) -> Option<&Binary> {
        self.binaries.iter().find(|b| b.student)
    }

    /// The shipped binary whose expected verdict is `expect`.
    pub fn binary_expecting(&self, expect: Verdict) -> Option<&Binary> {
        self.binaries.iter().find(|b| b.expect == expect)
    }

    /// The binary whose expected verdict is clean: the reference solution.
    pub fn fixed_binary(&self) -> Option<&Binary> {
        self.binary_expecting(Verdict::Clean)
    }

    /// The name of the student's own copy (`03-close-wait-student`), a binary of the desk
    /// package; `None` for a read-and-run lesson.
    pub fn desk_name(&self) -> Option<String> {
        self.student_binary()
            .map(|_| format!("{}-{}-student", self.id, self.slug))
    }

    /// The student's copy, relative to the workspace root.
    pub fn student_file(&self) -> Option<String> {
        self.desk_name()
            .map(|name| format!("{DESK_BIN_DIR}/{name}.rs"))
    }

    /// Resolve what `--variant` (or Python's `variant=`) names: `leak`, `fixed` or `student`
    /// by the catalog's `expect` and `student` fields, or a shipped binary's full name.
    /// Anything else is an error that lists the valid choices.
    pub fn resolve(&self, key: &str) -> Result<Choice<'_>, UnknownVariant> {
        let key = key.trim();
        let found = match key.parse::<Variant>() {
            Ok(Variant::Leak) => self.binary_expecting(Verdict::Leak).map(Choice::Shipped),
            Ok(Variant::Fixed) => self.binary_expecting(Verdict::Clean).map(Choice::Shipped),
            Ok(Variant::Student) => self.desk_name().map(Choice::Student),
            Err(_) => self
                .binaries
                .iter()
                .find(|b| b.name == key)
                .map(Choice::Shipped),
        };
        found.ok_or_else(|| UnknownVariant {
            lesson: self.id.clone(),
            given: key.to_string(),
            choices: self.choices(),
        })
    }

    /// Every valid `--variant` of this lesson, for error messages and help.
    pub fn choices(&self) -> Vec<String> {
        let mut out: Vec<String> = Variant::ALL
            .iter()
            .filter(|v| match v {
                Variant::Leak => self.binary_expecting(Verdict::Leak).is_some(),
                Variant::Fixed => self.binary_expecting(Verdict::Clean).is_some(),
                Variant::Student => self.student_binary().is_some(),
            })
            .map(|v| v.to_string())
            .collect();
        out.extend(self.binaries.iter().map(|b| b.name.clone()));
        out
    }
}

/// Where `cargo lab start` puts the students' copies, relative to the workspace root.
pub const DESK_BIN_DIR: &str = "exercises/desk/src/bin";

/// The words `--variant` takes besides a binary's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The shipped binary that shows the lesson's problem (`expect = "leak"`).
    Leak,
    /// The shipped reference fix (`expect = "clean"`).
    Fixed,
    /// The student's own copy on the desk (made by `start`).
    Student,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Leak, Variant::Fixed, Variant::Student];
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Variant::Leak => "leak",
            Variant::Fixed => "fixed",
            Variant::Student => "student",
        })
    }
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Variant, String> {
        Variant::ALL
            .into_iter()
            .find(|v| v.to_string().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("{s:?} is not one of leak, fixed, student"))
    }
}

/// What a variant resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice<'a> {
    /// A binary shipped in `exercises/src/bin/`.
    Shipped(&'a Binary),
    /// The student's copy on the desk, by its binary name.
    Student(String),
}

impl Choice<'_> {
    /// The binary's name, as cargo knows it.
    pub fn name(&self) -> &str {
        match self {
            Choice::Shipped(b) => &b.name,
            Choice::Student(name) => name,
        }
    }

    /// The verdict this binary should get: a student's copy is meant to end clean.
    pub fn expect(&self) -> Verdict {
        match self {
            Choice::Shipped(b) => b.expect,
            Choice::Student(_) => Verdict::Clean,
        }
    }
}

/// A `--variant` that names nothing in the lesson.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariant {
    pub lesson: String,
    pub given: String,
    pub choices: Vec<String>,
}

impl std::fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lesson {} has no variant {:?}; choose one of: {}",
            self.lesson,
            self.given,
            self.choices.join(", ")
        )
    }
}

impl std::error::Error for UnknownVariant {}

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

    /// The lesson and catalog entry of a program: a shipped binary by its name, or a student's
    /// copy, whose name starts with the id of a lesson that has a student binary
    /// (`03-close-wait-student`, or any other name a test gives a copy, such as
    /// `03-wrong-shutdown`). A copy is expected to end clean.
    pub fn program(&self, name: &str) -> Option<(&Lesson, Binary)> {
        if let Some((l, b)) = self.binary(name) {
            return Some((l, b.clone()));
        }
        let lesson = self.lessons.iter().find(|l| {
            name.strip_prefix(l.id.as_str())
                .is_some_and(|rest| rest.starts_with('-') && rest.len() > 1)
        })?;
        lesson.student_binary()?;
        Some((
            lesson,
            Binary {
                name: name.to_string(),
                expect: Verdict::Clean,
                student: true,
            },
        ))
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
        // One lesson per numbered chapter of the book (book/src/NN-*.md).
        let book = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../book/src");
        let chapters = std::fs::read_dir(&book)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| {
                n.len() > 3 && n[..2].bytes().all(|b| b.is_ascii_digit()) && &n[2..3] == "-"
            })
            .count();
        assert!(
            chapters >= 11,
            "{} has {chapters} lesson chapters",
            book.display()
        );
        assert_eq!(c.lessons.len(), chapters);
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
        assert_eq!(l.resolve("leak").unwrap().name(), "03-close-wait-leak");
        assert_eq!(
            l.resolve("03-close-wait-fixed").unwrap().expect(),
            Verdict::Clean
        );
        assert_eq!(
            l.resolve("student").unwrap(),
            Choice::Student("03-close-wait-student".into())
        );
        let err = c.require("99").unwrap_err().to_string();
        assert!(err.contains("03 (close-wait)"), "{err}");
    }
}

#[cfg(test)]
mod variant_tests {
    use super::*;

    /// Every paired lesson resolves `leak` and `fixed` from the catalog's fields, whatever its
    /// binaries are called (05's are named after who closes first, 06's after the option).
    #[test]
    fn leak_and_fixed_resolve_on_every_paired_lesson() {
        let c = Catalog::builtin();
        for l in &c.lessons {
            if l.binaries.len() < 2 {
                continue;
            }
            let leak = l.resolve("leak").unwrap();
            let fixed = l.resolve("FIXED").unwrap();
            assert_eq!(leak.expect(), Verdict::Leak, "{}", l.id);
            assert_eq!(fixed.expect(), Verdict::Clean, "{}", l.id);
            assert_ne!(leak.name(), fixed.name());
        }
    }

    #[test]
    fn anything_else_is_an_error_listing_the_choices() {
        let c = Catalog::builtin();
        let err = c.lesson("06").unwrap().resolve("reuseaddr").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("leak, fixed, student"), "{text}");
        assert!(text.contains("06-restart-reuseaddr"), "{text}");
        // A read-and-run lesson has no student copy.
        let two = c.lesson("02").unwrap();
        assert!(two.resolve("student").is_err());
        assert!(two.student_file().is_none());
        assert!(!two.choices().contains(&"student".to_string()));
    }
}
