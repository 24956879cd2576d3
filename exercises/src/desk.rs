//! The student's desk: the copy of a lesson's leaking program that `start` makes for the
//! student to edit, and the comparison with the reference fix that `check` shows after a pass.
//!
//! The shipped pair in `src/bin/` is the book's source and the tests' fixture, and its
//! comments explain the bug (`// LESSON:` lines) and what the program does wrong (`//!`). A
//! copy handed to a student keeps the code and drops those: it gets a header that says how to
//! run and grade it, and a neutral `// TODO` where the `// LESSON:` lines were, as rustlings
//! marks its exercises. The book's `// ANCHOR:` markers go too.
//!
//! Left out on purpose: merging a new version of a lesson into a student's edited copy;
//! `reset` keeps the student's version as a backup instead.

use crate::catalog::Lesson;

/// The comment marker of the lines that explain a lesson's bug or fix.
pub const LESSON_MARK: &str = "// LESSON:";

/// The student's copy of `source` (a shipped lesson binary) for `lesson`: a neutral header,
/// the code, a `// TODO` where each block of `// LESSON:` lines was. `command` is how the
/// student types the runner (`cargo lab` or `tcplab`).
pub fn student_copy(lesson: &Lesson, source: &str, command: &str) -> String {
    let todo = lesson
        .todo
        .as_deref()
        .unwrap_or("this is the part of the program the lesson is about");
    let mut out = header(lesson, command);
    out.push_str(&body(source, Some(todo)));
    out
}

/// `source` with its `//!` header, `// LESSON:` comments and `// ANCHOR` markers removed,
/// the way [`student_copy`] shows code; with `todo`, a `// TODO` marks each removed block.
pub fn body(source: &str, todo: Option<&str>) -> String {
    let mut out = String::new();
    let mut lines = source.lines().peekable();
    // The module's own documentation, and the blank line after it.
    while lines.peek().is_some_and(|l| l.starts_with("//!")) {
        lines.next();
    }
    while lines.peek().is_some_and(|l| l.trim().is_empty()) {
        lines.next();
    }
    let mut in_block = false;
    for line in lines {
        let trimmed = line.trim_start();
        if trimmed.starts_with("// ANCHOR") {
            continue;
        }
        if trimmed.starts_with(LESSON_MARK) {
            if !in_block {
                if let Some(todo) = todo {
                    let indent = &line[..line.len() - trimmed.len()];
                    out.push_str(&format!("{indent}// TODO: {todo}\n"));
                }
            }
            in_block = true;
            continue;
        }
        in_block = false;
        // A `// LESSON:` comment at the end of a code line goes, the code stays.
        match line.find(LESSON_MARK) {
            Some(at) => {
                out.push_str(line[..at].trim_end());
                if let Some(todo) = todo {
                    out.push_str(&format!(" // TODO: {todo}"));
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn header(lesson: &Lesson, command: &str) -> String {
    let id = &lesson.id;
    format!(
        "//! Lesson {id}: {title}. Your copy, to edit.\n\
         //!\n\
         //! Run it: `{command} run {id} --variant student` (add `--narrate` to read what happens).\n\
         //! Grade it: `{command} check {id}` (or `{command} check {id} --watch`, which grades each save).\n\
         //! Stuck? `{command} hint {id}` gives one hint at a time; the chapter is {chapter}.\n\
         //! A fresh copy: `{command} reset {id}` (yours is kept as a backup).\n\n",
        title = lesson.title,
        chapter = lesson.chapter,
    )
}

/// A unified diff from the student's file to the reference fix, both shown as code only
/// (headers, `// LESSON:` lines and markers left out), so the difference is the fix itself.
pub fn diff_with_reference(student: &str, reference: &str, reference_name: &str) -> String {
    // The student's own TODO markers are not part of the fix.
    let mine: String = body(student, None)
        .lines()
        .filter(|l| !l.trim_start().starts_with("// TODO:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let theirs = body(reference, None);
    similar::TextDiff::from_lines(&mine, &theirs)
        .unified_diff()
        .context_radius(2)
        .header("your copy", reference_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    const SHIPPED: &str = "//! Lesson 03, the leak: it explains the bug.\n//!\n//! More.\n\nuse std::io;\n\n// ANCHOR: handler\nfn handle() {\n    let a = 1; // LESSON: stays empty\n    loop {\n        // LESSON: read() == 0 means the peer closed.\n        // LESSON: this waits forever.\n        sleep();\n    }\n}\n// ANCHOR_END: handler\n";

    #[test]
    fn the_copy_keeps_the_code_and_drops_the_spoilers() {
        let c = Catalog::builtin();
        let lesson = c.lesson("03").unwrap();
        let copy = student_copy(lesson, SHIPPED, "cargo lab");
        assert!(!copy.contains("LESSON"), "{copy}");
        assert!(!copy.contains("ANCHOR"), "{copy}");
        assert!(!copy.contains("explains the bug"), "{copy}");
        assert!(copy.contains("`cargo lab check 03`"), "{copy}");
        assert!(copy.contains("let a = 1; // TODO:"), "{copy}");
        assert_eq!(copy.matches("        // TODO:").count(), 1, "{copy}");
        assert!(copy.contains("        sleep();\n"), "{copy}");
    }

    #[test]
    fn every_student_binary_gets_a_todo_and_keeps_no_lesson_line() {
        let c = Catalog::builtin();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for lesson in &c.lessons {
            let Some(bin) = lesson.student_binary() else {
                continue;
            };
            assert!(lesson.todo.is_some(), "lesson {} has no todo", lesson.id);
            let src =
                std::fs::read_to_string(root.join(format!("src/bin/{}.rs", bin.name))).unwrap();
            assert!(src.contains(LESSON_MARK), "{} has no LESSON line", bin.name);
            let copy = student_copy(lesson, &src, "tcplab");
            assert!(copy.contains("// TODO: "), "{}", bin.name);
            assert!(!copy.contains("LESSON"), "{}", bin.name);
        }
    }

    #[test]
    fn the_diff_shows_only_the_fix() {
        let fixed = SHIPPED.replace("        sleep();\n", "        return;\n");
        let d = diff_with_reference(SHIPPED, &fixed, "03-close-wait-fixed");
        assert!(d.contains("-        sleep();"), "{d}");
        assert!(d.contains("+        return;"), "{d}");
        assert!(!d.contains("LESSON"), "{d}");
    }
}
