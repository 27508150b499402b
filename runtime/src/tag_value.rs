//! How a tag template's placeholder renders its value: `Display`, and `Option<T: Display>`
//! too, whose `None` renders as nothing (`"viewer:{viewer}"` → `viewer:`) and whose `Some(v)`
//! renders as `v`, except that a `v` that renders as nothing renders as `"\0"`: no `Some` reads
//! as `None`. Chosen by autoref (`let v = &TagValue(&x); v.__cq_tag()`): an `Option` finds
//! `OptionTagValue` at the first step, any other type `DisplayTagValue` at the second.

use std::fmt::{self, Display, Write};

/// A placeholder's value.
pub struct TagValue<'a, T: ?Sized>(pub &'a T);

/// An `Option`'s rendering (see the module docs).
pub struct Rendered<'a, T>(Option<&'a T>);

pub trait OptionTagValue<'a, T> {
    fn __cq_tag(&self) -> Rendered<'a, T>;
}

impl<'a, T: Display> OptionTagValue<'a, T> for TagValue<'a, Option<T>> {
    fn __cq_tag(&self) -> Rendered<'a, T> {
        Rendered(self.0.as_ref())
    }
}

impl<'a, T: Display> OptionTagValue<'a, T> for TagValue<'a, &Option<T>> {
    fn __cq_tag(&self) -> Rendered<'a, T> {
        Rendered(self.0.as_ref())
    }
}

pub trait DisplayTagValue<'a, T: ?Sized> {
    fn __cq_tag(&self) -> &'a T;
}

// Unbounded: a value that is not `Display` is then reported by `format!`, plainly.
impl<'a, T: ?Sized> DisplayTagValue<'a, T> for &TagValue<'a, T> {
    fn __cq_tag(&self) -> &'a T {
        self.0
    }
}

impl<T: Display> Display for Rendered<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(value) = self.0 else { return Ok(()) };
        let mut out = Counted { out: f, any: false };
        write!(out, "{value}")?;
        match out.any {
            true => Ok(()),
            false => f.write_char('\0'),
        }
    }
}

/// Whether anything was written through it.
struct Counted<'f, 'g> {
    out: &'f mut fmt::Formatter<'g>,
    any: bool,
}

impl Write for Counted<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.any |= !s.is_empty();
        self.out.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::{DisplayTagValue, OptionTagValue, TagValue};

    /// As the macro writes it.
    macro_rules! render {
        ($value:expr) => {{
            let value = &TagValue(&$value);
            format!("{}", value.__cq_tag())
        }};
    }

    #[test]
    fn options_render_their_value_and_none_as_nothing() {
        let (some, none, empty) = (Some(7), None::<i64>, Some(String::new()));
        assert_eq!(render!(some), "7");
        assert_eq!(render!(none), "");
        assert_eq!(render!(empty), "\0");
        let by_ref = &some;
        assert_eq!(render!(by_ref), "7");
        assert_eq!(render!("plain"), "plain");
        assert_eq!(render!(String::new()), "", "not an Option: as it is");
    }
}
