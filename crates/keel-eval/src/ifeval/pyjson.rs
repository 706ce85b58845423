//! What Python's `json.loads` accepts, for `detectable_format:json_format`: a validating scanner
//! over bytes, without building values (so numbers of any size and lone surrogate escapes are
//! fine) and without recursion (containers are tracked on a stack).

/// Whether Python's `json.loads` accepts `s` (the C scanner's grammar: JSON plus `NaN`,
/// `Infinity`, `-Infinity`; control characters refused inside strings; integer literals of more
/// than 4300 digits refused, as CPython >= 3.11 does by default).
pub fn python_json_valid(s: &str) -> bool {
    Scanner { b: s.as_bytes() }.document()
}

/// The scanner over the text's bytes; each method takes a position and returns where what it
/// scanned ends, or `None` where the text is not JSON.
struct Scanner<'a> {
    b: &'a [u8],
}

impl Scanner<'_> {
    /// Skips JSON whitespace from `i`.
    fn ws(&self, mut i: usize) -> usize {
        while i < self.b.len() && matches!(self.b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    }

    /// A string starting at `i` (`b[i] == b'"'`).
    fn string(&self, mut i: usize) -> Option<usize> {
        let b = self.b;
        i += 1;
        loop {
            match *b.get(i)? {
                b'"' => return Some(i + 1),
                b'\\' => match *b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                },
                c if c < 0x20 => return None,
                _ => i += 1,
            }
        }
    }

    /// A number starting at `i`, as Python's scanner reads one (a fraction or exponent without
    /// digits ends the number before it).
    fn number(&self, mut i: usize) -> Option<usize> {
        let b = self.b;
        let start = i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        let int_digits = i - int_start;
        let mut is_float = false;
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            is_float = true;
            i += 2;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            let digits_start = j;
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            if j > digits_start {
                is_float = true;
                i = j;
            }
        }
        if !is_float && int_digits > 4300 {
            return None;
        }
        debug_assert!(i > start);
        Some(i)
    }

    /// A string, a literal (`null`, `true`, `false`, `NaN`, `Infinity`, `-Infinity`) or a number
    /// starting at `i`.
    fn scalar(&self, i: usize) -> Option<usize> {
        if self.b.get(i) == Some(&b'"') {
            return self.string(i);
        }
        let rest = &self.b[i..];
        match ["null", "true", "false", "NaN", "Infinity", "-Infinity"].iter().find(|l| rest.starts_with(l.as_bytes()))
        {
            Some(l) => Some(i + l.len()),
            None => self.number(i),
        }
    }

    /// An object member's `"key" :` at `i`; returns where its value starts.
    fn member_key(&self, i: usize) -> Option<usize> {
        if self.b.get(i) != Some(&b'"') {
            return None;
        }
        let i = self.ws(self.string(i)?);
        (self.b.get(i) == Some(&b':')).then(|| self.ws(i + 1))
    }

    /// Whether the whole text is one value, with whitespace around it. Containers push onto the
    /// stack and come back through the loop.
    fn document(&self) -> bool {
        let b = self.b;
        let mut stack: Vec<u8> = Vec::new();
        let mut i = self.ws(0);
        'value: loop {
            // Parse one value at i.
            match b.get(i) {
                Some(b'{') => {
                    i = self.ws(i + 1);
                    if b.get(i) == Some(&b'}') {
                        i += 1;
                    } else {
                        let Some(j) = self.member_key(i) else { return false };
                        i = j;
                        stack.push(b'{');
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    i = self.ws(i + 1);
                    if b.get(i) == Some(&b']') {
                        i += 1;
                    } else {
                        stack.push(b'[');
                        continue 'value;
                    }
                }
                Some(_) => match self.scalar(i) {
                    Some(j) => i = j,
                    None => return false,
                },
                None => return false,
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(&top) = stack.last() else {
                    return self.ws(i) == b.len();
                };
                i = self.ws(i);
                match (top, b.get(i)) {
                    (b'{', Some(b'}')) | (b'[', Some(b']')) => {
                        stack.pop();
                        i += 1;
                    }
                    (b'{', Some(b',')) => {
                        let Some(j) = self.member_key(self.ws(i + 1)) else { return false };
                        i = j;
                        continue 'value;
                    }
                    (b'[', Some(b',')) => {
                        i = self.ws(i + 1);
                        continue 'value;
                    }
                    _ => return false,
                }
            }
        }
    }
}
