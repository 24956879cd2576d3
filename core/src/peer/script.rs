//! The packetdrill script language, the part of it that closing a connection needs: timed
//! system calls on the socket under test, segments the peer injects (`<`) or expects (`>`),
//! and backtick shell commands.
//!
//! Written here rather than borrowed: packetdrill's own parser is a bison grammar in C, bound
//! to its C structures, and no Rust crate parses the language. What is here is small enough
//! to read in one sitting, and every construct it does not know is an error that names the
//! construct and its line, never a line skipped in silence (a skipped `>` would make a
//! failing script pass).
//!
//! Left out on purpose: IPv6 and IP-level fields (`[ecn]`, `(DF)`, `ttl`), UDP and ICMP
//! lines, `%{ python }%` blocks, sendmsg/recvmsg/poll/epoll, `--option` lines, variables.
//! They are rejected with their line number.

use std::fmt;

use anyhow::{Result, bail};

/// One parsed script.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// The command before the first timed event (packetdrill's init command).
    pub init: Option<Command>,
    pub events: Vec<Event>,
}

/// A shell command between backticks, and the line it started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub line: usize,
    pub text: String,
}

/// When an event is due, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// `*`: any time.
    Any,
    /// `0.1`: since the script started.
    Absolute(i64),
    /// `+0.1`: after the previous event.
    Relative(i64),
    /// `0.1~0.2`: a window since the start.
    AbsoluteRange(i64, i64),
    /// `+0.1~+0.2`: a window after the previous event.
    RelativeRange(i64, i64),
}

/// One line of the script.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub line: usize,
    pub when: When,
    /// `...END` after the time: a system call that blocks until END.
    pub blocking_until: Option<i64>,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    Command(String),
    Packet(Packet),
    Syscall(Syscall),
}

/// Which way a segment goes, seen from the kernel under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `<`: the peer sends it to the kernel.
    Inbound,
    /// `>`: the kernel must send it.
    Outbound,
}

/// A segment line: `< S. 0:0(0) ack 1 win 32768 <mss 1000,nop>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub direction: Direction,
    /// TCP flag bits, as in the header's 13th byte.
    pub flags: u8,
    /// Relative sequence number of the first byte.
    pub seq: u32,
    /// Payload length.
    pub len: u32,
    pub ack: Option<u32>,
    pub win: Option<u16>,
    /// `None`: `<...>`, any options; `Some(list)`: exactly these (empty when none were written).
    pub options: Option<Vec<TcpOpt>>,
}

/// One TCP option as a script writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOpt {
    Nop,
    Eol,
    Mss(u16),
    Wscale(u8),
    SackOk,
    Sack(Vec<(u32, u32)>),
    Timestamp { val: u32, ecr: u32 },
}

/// A system call line: `NAME(ARGS) = RESULT [ERRNO (TEXT)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Syscall {
    pub name: String,
    pub args: Vec<Arg>,
    pub ret: i64,
    pub errno: Option<String>,
}

/// One argument of a system call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `...`: packetdrill fills it in (an address, a buffer).
    Ellipsis,
    Int(i64),
    /// `A|B|C`: symbolic constants or'ed together (one name alone is a list of one).
    Names(Vec<String>),
    /// `[1]`: a pointer to an int.
    IntPtr(i64),
    /// `{onoff=1, linger=0}`: a struct, as name=value pairs.
    Struct(Vec<(String, i64)>),
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;
pub const TCP_ECE: u8 = 0x40;
pub const TCP_CWR: u8 = 0x80;

/// Flags as a script writes them (`F.`, `S`, `FP.`).
pub fn flags_text(flags: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (TCP_FIN, 'F'),
        (TCP_SYN, 'S'),
        (TCP_RST, 'R'),
        (TCP_PSH, 'P'),
        (TCP_URG, 'U'),
        (TCP_ECE, 'E'),
        (TCP_CWR, 'W'),
        (TCP_ACK, '.'),
    ] {
        if flags & bit != 0 {
            s.push(c);
        }
    }
    s
}

impl fmt::Display for TcpOpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpOpt::Nop => write!(f, "nop"),
            TcpOpt::Eol => write!(f, "eol"),
            TcpOpt::Mss(m) => write!(f, "mss {m}"),
            TcpOpt::Wscale(w) => write!(f, "wscale {w}"),
            TcpOpt::SackOk => write!(f, "sackOK"),
            TcpOpt::Sack(blocks) => {
                write!(f, "sack")?;
                for (a, b) in blocks {
                    write!(f, " {a}:{b}")?;
                }
                Ok(())
            }
            TcpOpt::Timestamp { val, ecr } => write!(f, "TS val {val} ecr {ecr}"),
        }
    }
}

/// Options as a script writes them: `<mss 1000,nop>`.
pub fn options_text(options: &[TcpOpt]) -> String {
    let parts: Vec<String> = options.iter().map(|o| o.to_string()).collect();
    format!("<{}>", parts.join(","))
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.seq.wrapping_add(self.len);
        write!(
            f,
            "{} {}:{}({})",
            flags_text(self.flags),
            self.seq,
            end,
            self.len
        )?;
        if let Some(a) = self.ack {
            write!(f, " ack {a}")?;
        }
        if let Some(w) = self.win {
            write!(f, " win {w}")?;
        }
        match &self.options {
            None => write!(f, " <...>"),
            Some(o) if o.is_empty() => Ok(()),
            Some(o) => write!(f, " {}", options_text(o)),
        }
    }
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            match a {
                Arg::Ellipsis => write!(f, "...")?,
                Arg::Int(n) => write!(f, "{n}")?,
                Arg::Names(ns) => write!(f, "{}", ns.join("|"))?,
                Arg::IntPtr(n) => write!(f, "[{n}]")?,
                Arg::Struct(fs) => {
                    let parts: Vec<String> = fs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, "{{{}}}", parts.join(", "))?
                }
            }
        }
        write!(f, ") = {}", self.ret)?;
        if let Some(e) = &self.errno {
            write!(f, " {e}")?;
        }
        Ok(())
    }
}

/// Parse a whole script. `file` names it in error messages (`FILE:LINE: ...`).
pub fn parse(file: &str, text: &str) -> Result<Script> {
    let text = strip_comments(text);
    let mut p = Parser {
        file,
        s: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut init = None;
    let mut events = Vec::new();
    loop {
        p.skip_space(true);
        if p.pos >= p.s.len() {
            break;
        }
        let line = p.line;
        let c = p.s[p.pos];
        if c == b'`' {
            if !events.is_empty() || init.is_some() {
                bail!(
                    "{file}:{line}: a command after the first event needs a time in front of it \
                     (`+0 `...``)"
                );
            }
            init = Some(Command {
                line,
                text: p.backquoted()?,
            });
            continue;
        }
        if c == b'-' && p.s.get(p.pos + 1) == Some(&b'-') {
            bail!("{file}:{line}: unsupported construct: `--option` lines");
        }
        events.push(p.event()?);
    }
    Ok(Script { init, events })
}

/// Replace `//` and `/* */` comments by spaces, keeping newlines so line numbers hold. A
/// `//` inside backticks (a URL in a shell command) is left alone.
fn strip_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let mut in_tick = false;
    while i < b.len() {
        if b[i] == b'`' {
            in_tick = !in_tick;
        }
        if !in_tick && b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
            continue;
        }
        if !in_tick && b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                i += 1;
            }
            i += 2;
            out.extend_from_slice(b"  ");
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_default()
}

struct Parser<'a> {
    file: &'a str,
    s: &'a [u8],
    pos: usize,
    line: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\t' || c == b'\r' || (newlines && c == b'\n') {
                self.bump();
            } else {
                break;
            }
        }
    }

    fn err<T>(&self, line: usize, what: impl fmt::Display) -> Result<T> {
        bail!("{}:{}: {}", self.file, line, what)
    }

    fn backquoted(&mut self) -> Result<String> {
        let line = self.line;
        self.bump(); // the opening backtick
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b'`' {
                let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                self.bump();
                return Ok(text);
            }
            self.bump();
        }
        self.err(line, "a backtick command is never closed")
    }

    /// The rest of the logical line: up to a newline outside parentheses and braces.
    fn rest_of_line(&mut self) -> String {
        let start = self.pos;
        let mut depth = 0i32;
        while let Some(c) = self.peek() {
            match c {
                b'(' | b'{' | b'[' => depth += 1,
                b')' | b'}' | b']' => depth -= 1,
                b'\n' if depth <= 0 => break,
                _ => {}
            }
            self.bump();
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    fn number(&mut self, line: usize) -> Result<i64> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ellipsis = self.s[self.pos..].starts_with(b"...");
            if c.is_ascii_digit() || (c == b'.' && !ellipsis) {
                self.bump();
            } else {
                break;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        if text.is_empty() || text == "." {
            let found = self
                .peek()
                .map_or("the end".to_string(), |c| format!("{:?}", c as char));
            return self.err(line, format!("expected a time, found {found}"));
        }
        seconds_to_us(text)
            .ok_or_else(|| anyhow::anyhow!("{}:{line}: bad time {text:?}", self.file))
    }

    /// `+N`, `N` or `*`: the flag says whether it was relative.
    fn time(&mut self, line: usize) -> Result<Option<(bool, i64)>> {
        if self.peek() == Some(b'*') {
            self.bump();
            return Ok(None);
        }
        let relative = self.peek() == Some(b'+');
        if relative {
            self.bump();
        }
        Ok(Some((relative, self.number(line)?)))
    }

    fn event(&mut self) -> Result<Event> {
        let line = self.line;
        let when = match self.time(line)? {
            None => When::Any,
            Some((rel, t)) => {
                if self.peek() == Some(b'~') {
                    self.bump();
                    let Some((rel2, t2)) = self.time(line)? else {
                        return self.err(line, "a time range cannot end in `*`");
                    };
                    if rel != rel2 {
                        return self
                            .err(line, "a time range mixes a relative and an absolute time");
                    }
                    if t2 < t {
                        return self.err(line, "a time range ends before it starts");
                    }
                    if rel {
                        When::RelativeRange(t, t2)
                    } else {
                        When::AbsoluteRange(t, t2)
                    }
                } else if rel {
                    When::Relative(t)
                } else {
                    When::Absolute(t)
                }
            }
        };
        let mut blocking_until = None;
        if self.s[self.pos..].starts_with(b"...") {
            self.pos += 3;
            match self.time(line)? {
                Some((_, t)) => blocking_until = Some(t),
                None => return self.err(line, "a blocking call cannot end at `*`"),
            }
        }
        self.skip_space(false);
        let what = match self.peek() {
            Some(b'`') => What::Command(self.backquoted()?),
            Some(b'<') | Some(b'>') => {
                let text = self.rest_of_line();
                What::Packet(parse_packet(self.file, line, &text)?)
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let text = self.rest_of_line();
                What::Syscall(parse_syscall(self.file, line, &text)?)
            }
            Some(b'%') => return self.err(line, "unsupported construct: `%{ ... }%` code blocks"),
            _ => {
                let text = self.rest_of_line();
                return self.err(line, format!("cannot read this event: {:?}", text.trim()));
            }
        };
        if blocking_until.is_some() && !matches!(what, What::Syscall(_)) {
            return self.err(line, "only a system call can block (`...` after its time)");
        }
        Ok(Event {
            line,
            when,
            blocking_until,
            what,
        })
    }
}

/// `".01"` -> 10000 microseconds.
fn seconds_to_us(text: &str) -> Option<i64> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if frac.contains('.') || frac.len() > 6 {
        return None;
    }
    let int: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut f = frac.to_string();
    while f.len() < 6 {
        f.push('0');
    }
    Some(int.checked_mul(1_000_000)? + f.parse::<i64>().ok()?)
}

fn parse_packet(file: &str, line: usize, text: &str) -> Result<Packet> {
    let fail = |what: String| -> Result<Packet> { bail!("{file}:{line}: {what}") };
    let text = text.trim();
    let direction = match text.as_bytes()[0] {
        b'<' => Direction::Inbound,
        _ => Direction::Outbound,
    };
    // The option list is the last `<...>` on the line.
    let (head, options) = match text[1..].find('<') {
        Some(i) => {
            let i = i + 1;
            let Some(close) = text.rfind('>').filter(|&c| c > i) else {
                return fail("a TCP option list is never closed with `>`".into());
            };
            if !text[close + 1..].trim().is_empty() {
                return fail(format!(
                    "unexpected text after the option list: {:?}",
                    text[close + 1..].trim()
                ));
            }
            (&text[1..i], Some(&text[i + 1..close]))
        }
        None => (&text[1..], None),
    };
    let mut words = head.split_whitespace();
    let Some(flag_word) = words.next() else {
        return fail("a segment needs its flags (`S`, `.`, `F.`...)".into());
    };
    if flag_word.starts_with('[') || flag_word.starts_with('(') {
        return fail(format!(
            "unsupported construct: IP-level field {flag_word:?}"
        ));
    }
    let mut flags = 0u8;
    for c in flag_word.chars() {
        flags |= match c {
            'F' => TCP_FIN,
            'S' => TCP_SYN,
            'R' => TCP_RST,
            'P' => TCP_PSH,
            '.' => TCP_ACK,
            'U' => TCP_URG,
            'E' => TCP_ECE,
            'W' => TCP_CWR,
            _ => return fail(format!("unknown TCP flag {c:?} in {flag_word:?}")),
        };
    }
    let Some(range) = words.next() else {
        return fail("a segment needs its sequence range (`1:1(0)`)".into());
    };
    let (seq, len) = parse_range(range).ok_or_else(|| {
        anyhow::anyhow!("{file}:{line}: bad sequence range {range:?}, expected START:END(LEN)")
    })?;
    let mut ack = None;
    let mut win = None;
    while let Some(w) = words.next() {
        let value = words.next();
        let num = |v: Option<&str>| -> Result<i64> {
            v.and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| anyhow::anyhow!("{file}:{line}: `{w}` needs a number"))
        };
        match w {
            "ack" => {
                let n = num(value)?;
                ack = Some(
                    u32::try_from(n)
                        .map_err(|_| anyhow::anyhow!("{file}:{line}: ack {n} is out of range"))?,
                )
            }
            "win" => {
                let n = num(value)?;
                win = Some(u16::try_from(n).map_err(|_| {
                    anyhow::anyhow!("{file}:{line}: win {n} does not fit in 16 bits")
                })?)
            }
            other => return fail(format!("unsupported construct in a segment: {other:?}")),
        }
    }
    if ack.is_some() != (flags & TCP_ACK != 0) {
        return fail(if ack.is_some() {
            "`ack N` on a segment without the ACK flag (`.`)".into()
        } else {
            "a segment with the ACK flag (`.`) needs `ack N`".into()
        });
    }
    let options = match options {
        None => Some(Vec::new()),
        Some(o) if o.trim() == "..." => None,
        Some(o) => Some(parse_options(file, line, o)?),
    };
    Ok(Packet {
        direction,
        flags,
        seq,
        len,
        ack,
        win,
        options,
    })
}

/// `1:1001(1000)` -> (1, 1000), checking that END - START = LEN.
fn parse_range(s: &str) -> Option<(u32, u32)> {
    let (start, rest) = s.split_once(':')?;
    let (end, len) = rest.split_once('(')?;
    let len = len.strip_suffix(')')?;
    let (start, end, len): (u32, u32, u32) =
        (start.parse().ok()?, end.parse().ok()?, len.parse().ok()?);
    (end.wrapping_sub(start) == len).then_some((start, len))
}

fn parse_options(file: &str, line: usize, text: &str) -> Result<Vec<TcpOpt>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let num = |i: usize| -> Result<i64> {
            words
                .get(i)
                .and_then(|w| w.parse::<i64>().ok())
                .ok_or_else(|| anyhow::anyhow!("{file}:{line}: TCP option {part:?} needs a number"))
        };
        let opt = match words.first().copied() {
            Some("nop") if words.len() == 1 => TcpOpt::Nop,
            Some("eol") if words.len() == 1 => TcpOpt::Eol,
            Some("sackOK") if words.len() == 1 => TcpOpt::SackOk,
            Some("mss") if words.len() == 2 => TcpOpt::Mss(
                u16::try_from(num(1)?)
                    .map_err(|_| anyhow::anyhow!("{file}:{line}: mss too large"))?,
            ),
            Some("wscale") if words.len() == 2 => TcpOpt::Wscale(
                u8::try_from(num(1)?)
                    .map_err(|_| anyhow::anyhow!("{file}:{line}: wscale too large"))?,
            ),
            Some("TS") if words.len() == 5 && words[1] == "val" && words[3] == "ecr" => {
                TcpOpt::Timestamp {
                    val: num(2)? as u32,
                    ecr: num(4)? as u32,
                }
            }
            Some("sack") if words.len() >= 2 => {
                let mut blocks = Vec::new();
                for w in &words[1..] {
                    let (a, b) = w
                        .split_once(':')
                        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                        .ok_or_else(|| anyhow::anyhow!("{file}:{line}: bad SACK block {w:?}"))?;
                    blocks.push((a, b));
                }
                TcpOpt::Sack(blocks)
            }
            _ => bail!("{file}:{line}: unsupported TCP option {:?}", part.trim()),
        };
        out.push(opt);
    }
    Ok(out)
}

fn parse_syscall(file: &str, line: usize, text: &str) -> Result<Syscall> {
    let fail = |what: String| -> Result<Syscall> { bail!("{file}:{line}: {what}") };
    let text = text.trim();
    let Some(open) = text.find('(') else {
        return fail(format!("cannot read this event: {text:?}"));
    };
    let name = text[..open].trim().to_string();
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return fail(format!("cannot read this event: {text:?}"));
    }
    // The matching parenthesis.
    let mut depth = 0;
    let mut close = None;
    for (i, c) in text.char_indices().skip(open) {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(close) = close else {
        return fail(format!("the arguments of {name} are never closed"));
    };
    let mut args = Vec::new();
    for a in split_top(&text[open + 1..close]) {
        args.push(parse_arg(file, line, a.trim())?);
    }
    let rest = text[close + 1..].trim();
    let Some(rest) = rest.strip_prefix('=') else {
        return fail(format!("{name}(...) needs its expected result (`= 0`)"));
    };
    let rest = rest.trim();
    let (ret_text, tail) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let Ok(ret) = ret_text.parse::<i64>() else {
        return fail(format!(
            "unsupported expected result {ret_text:?} (a number is needed)"
        ));
    };
    let errno = if tail.is_empty() {
        None
    } else {
        let (word, after) = match tail.find(char::is_whitespace) {
            Some(i) => (&tail[..i], tail[i..].trim()),
            None => (tail, ""),
        };
        if !word.starts_with('E')
            || !word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return fail(format!(
                "expected an errno name after the result, found {word:?}"
            ));
        }
        let in_parens = after.starts_with('(') && after.ends_with(')');
        if !after.is_empty() && !in_parens {
            return fail(format!("unexpected text after the errno: {after:?}"));
        }
        Some(word.to_string())
    };
    if errno.is_some() && ret != -1 {
        return fail("an errno goes with a result of -1".into());
    }
    Ok(Syscall {
        name,
        args,
        ret,
        errno,
    })
}

/// Split on commas outside brackets and braces.
fn split_top(s: &str) -> Vec<&str> {
    if s.trim().is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_arg(file: &str, line: usize, a: &str) -> Result<Arg> {
    if a == "..." {
        return Ok(Arg::Ellipsis);
    }
    if let Ok(n) = a.parse::<i64>() {
        return Ok(Arg::Int(n));
    }
    if let Some(inner) = a.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return match inner.trim().parse::<i64>() {
            Ok(n) => Ok(Arg::IntPtr(n)),
            Err(_) => bail!("{file}:{line}: unsupported argument {a:?} (only `[N]` is known)"),
        };
    }
    if let Some(inner) = a.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        let mut fields = Vec::new();
        for f in split_top(inner) {
            let Some((k, v)) = f.split_once('=') else {
                bail!(
                    "{file}:{line}: unsupported struct field {:?} (NAME=NUMBER)",
                    f.trim()
                );
            };
            let Ok(v) = v.trim().parse::<i64>() else {
                bail!(
                    "{file}:{line}: unsupported struct field {:?} (NAME=NUMBER)",
                    f.trim()
                );
            };
            fields.push((k.trim().to_string(), v));
        }
        return Ok(Arg::Struct(fields));
    }
    let names: Vec<String> = a.split('|').map(|n| n.trim().to_string()).collect();
    if names
        .iter()
        .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Ok(Arg::Names(names));
    }
    bail!("{file}:{line}: unsupported argument {a:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOSE: &str = "// a comment\n\n`../common/defaults.sh`\n\n    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n +.01...0.011 connect(3, ..., ...) = 0\n   +0 >  S 0:0(0) <...>\n   +0 < S. 0:0(0) ack 1 win 32768 <mss 1000,nop,wscale 6,nop,nop,sackOK>\n +.01~+.015 > F. 10001:10001(0) ack 1\n   +0 write(4, ..., 1000) = -1 EPIPE (Broken pipe)\n   +0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0\n   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n";

    #[test]
    fn parses_the_close_subset() {
        let s = parse("t.pkt", CLOSE).unwrap();
        assert_eq!(s.init.as_ref().unwrap().text, "../common/defaults.sh");
        assert_eq!(s.init.as_ref().unwrap().line, 3);
        assert_eq!(s.events.len(), 8);
        assert_eq!(s.events[0].line, 5);
        assert_eq!(s.events[0].when, When::Absolute(0));
        assert_eq!(s.events[1].when, When::Relative(10_000));
        assert_eq!(s.events[1].blocking_until, Some(11_000));
        let What::Packet(p) = &s.events[2].what else {
            panic!()
        };
        assert_eq!(
            (p.direction, p.flags, p.options.clone()),
            (Direction::Outbound, TCP_SYN, None)
        );
        let What::Packet(p) = &s.events[3].what else {
            panic!()
        };
        assert_eq!(p.flags, TCP_SYN | TCP_ACK);
        assert_eq!((p.ack, p.win), (Some(1), Some(32768)));
        assert_eq!(
            p.options.as_deref().unwrap(),
            &[
                TcpOpt::Mss(1000),
                TcpOpt::Nop,
                TcpOpt::Wscale(6),
                TcpOpt::Nop,
                TcpOpt::Nop,
                TcpOpt::SackOk
            ]
        );
        assert_eq!(s.events[4].when, When::RelativeRange(10_000, 15_000));
        let What::Packet(p) = &s.events[4].what else {
            panic!()
        };
        assert_eq!(
            (p.seq, p.len, p.options.as_deref()),
            (10001, 0, Some(&[][..]))
        );
        let What::Syscall(c) = &s.events[5].what else {
            panic!()
        };
        assert_eq!((c.ret, c.errno.as_deref()), (-1, Some("EPIPE")));
        let What::Syscall(c) = &s.events[6].what else {
            panic!()
        };
        assert_eq!(
            c.args[3],
            Arg::Struct(vec![("onoff".into(), 1), ("linger".into(), 0)])
        );
        let What::Syscall(c) = &s.events[7].what else {
            panic!()
        };
        assert_eq!(
            c.args[2],
            Arg::Names(vec!["O_RDWR".into(), "O_NONBLOCK".into()])
        );
    }

    #[test]
    fn unsupported_constructs_name_their_line() {
        for (text, needle) in [
            (
                "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < [ect0] S 0:0(0) win 1\n",
                "t.pkt:2: unsupported construct",
            ),
            (
                "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > S 0:0(0) <md5 abc>\n",
                "t.pkt:2: unsupported TCP option",
            ),
            (
                "0 read(3, ..., 10) = 1 EPIPE\n",
                "t.pkt:1: an errno goes with a result of -1",
            ),
            (
                "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > . 1:1(0)\n",
                "needs `ack N`",
            ),
            (
                "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > . 1:5(0) ack 1\n",
                "bad sequence range",
            ),
            (
                "--tolerance_usecs=10000\n",
                "t.pkt:1: unsupported construct",
            ),
            ("0 %{ print(1) }%\n", "t.pkt:1: unsupported construct"),
        ] {
            let err = parse("t.pkt", text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn times_in_seconds() {
        assert_eq!(seconds_to_us(".01"), Some(10_000));
        assert_eq!(seconds_to_us("0.011"), Some(11_000));
        assert_eq!(seconds_to_us("2"), Some(2_000_000));
        assert_eq!(seconds_to_us("1.0000001"), None);
    }

    #[test]
    fn packets_print_as_written() {
        let s = parse(
            "t.pkt",
            "0 < F. 1:1001(1000) ack 2 win 257 <nop,TS val 5 ecr 6>\n",
        )
        .unwrap();
        let What::Packet(p) = &s.events[0].what else {
            panic!()
        };
        assert_eq!(
            p.to_string(),
            "F. 1:1001(1000) ack 2 win 257 <nop,TS val 5 ecr 6>"
        );
    }
}
