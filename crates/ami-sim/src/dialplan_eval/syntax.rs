//! How Asterisk reads the small pieces of dialplan text evaluation meets: function calls,
//! `NAME:offset:length`, numbers as `sscanf` takes them, conditions, booleans, and the
//! `Variable:` header of Originate. Kept apart from evaluation because each mirrors one C
//! helper whose quirks (byte offsets, clamped integers) the callers rely on.

use ami_proto::app_args::separate_args;

/// The name=value pairs of one Originate `Variable:` header as `man_do_variable_value`
/// reads them: split like `AST_STANDARD_APP_ARGS` (at most 64 parts), each part cut at
/// its first `=`; parts without `=` or with an empty name are skipped. Names and values
/// are not trimmed (Asterisk does not either).
pub fn originate_variables(header_value: &str) -> Vec<(String, String)> {
    separate_args(header_value, ',', true, 64)
        .into_iter()
        .filter_map(|part| {
            let (k, v) = part.split_once('=')?;
            (!k.is_empty()).then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// `func_args`: `NAME(args)` → (NAME, args): the name ends at the first `(`, the
/// arguments at the last `)`. Without parentheses the whole text is the name.
pub(super) fn split_func(full: &str) -> (&str, &str) {
    match full.split_once('(') {
        Some((name, rest)) => (name, rest.rfind(')').map_or(rest, |p| &rest[..p])),
        None => (full, ""),
    }
}

/// `sscanf("%30d")`: leading blanks, a sign, digits.
pub(super) fn scan_int(s: &str) -> Option<(i32, &str)> {
    let t = s.trim_start();
    let b = t.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits_start = i;
    while i < b.len() && b[i].is_ascii_digit() && i < 30 {
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    let v: i64 = t[..i]
        .parse()
        .unwrap_or(if b.first() == Some(&b'-') { i64::MIN } else { i64::MAX });
    Some((v.clamp(i32::MIN as i64, i32::MAX as i64) as i32, &t[i..]))
}

/// `parse_variable_name`: (name, offset, length, is a function). `NAME:offset:length`
/// is cut at the first `:` outside parentheses.
pub(super) fn parse_variable_name(var: &str) -> (&str, i32, i32, bool) {
    let mut parens = 0i32;
    let mut isfunc = false;
    for (i, c) in var.char_indices() {
        match c {
            '(' => {
                isfunc = true;
                parens += 1;
            }
            ')' => parens -= 1,
            ':' if parens == 0 => {
                let rest = &var[i + 1..];
                let (offset, length) = match scan_int(rest) {
                    None => (0, i32::MAX),
                    Some((o, after)) => match after.strip_prefix(':').and_then(scan_int) {
                        Some((l, _)) => (o, l),
                        None => (o, i32::MAX),
                    },
                };
                return (&var[..i], offset, length, isfunc);
            }
            _ => {}
        }
    }
    (var, 0, i32::MAX, isfunc)
}

/// `ast_str_substring` (on bytes, as Asterisk does).
pub(super) fn substring(value: &str, offset: i32, length: i32) -> String {
    let b = value.as_bytes();
    let lr = b.len() as i64;
    let (mut offset, length) = (offset as i64, length as i64);
    if offset == 0 && length >= lr {
        return value.to_owned();
    }
    if offset < 0 {
        offset = (lr + offset).max(0);
    }
    if offset >= lr {
        return String::new();
    }
    let rest = &b[offset as usize..];
    let lr = rest.len() as i64;
    let cut: &[u8] = if length >= 0 && length < lr {
        &rest[..length as usize]
    } else if length < 0 {
        if lr > -length {
            &rest[..(lr + length) as usize]
        } else {
            &[]
        }
    } else {
        rest
    };
    String::from_utf8_lossy(cut).into_owned()
}

/// `pbx_checkcondition`: empty is false, a number is its value, any other text is true.
pub(super) fn check_condition(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    match scan_int(s) {
        Some((n, _)) => n != 0,
        None => true,
    }
}

/// `ast_true`.
pub(super) fn ast_true(s: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|x| s.trim().eq_ignore_ascii_case(x))
}
