//! Tag templates: `"users"`, `"user:{id}"`, `"org:{user.org_id}"` (`{{` and `}}` for braces).
//!
//! A placeholder names a parameter of the function (or a binding of a parameter's pattern),
//! optionally followed by a field path, and is replaced by its `Display` at call time; an
//! `Option<T: Display>` by its value, `None` by nothing (see `__private::tag_value`).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{Ident, LitStr};

/// The expression that formats `template` (a `String`), from the parameters named `params`
/// (`p`: the path of `__private`).
pub fn format(template: &LitStr, params: &[&Ident], p: &TokenStream) -> syn::Result<TokenStream> {
    let text = template.value();
    let span = template.span();
    let mut fmt = String::new();
    // The text itself, for a template without placeholders.
    let mut plain = String::new();
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                fmt.push_str("{{");
                plain.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                fmt.push_str("}}");
                plain.push('}');
            }
            '{' => {
                let mut inner = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    inner.push(c);
                }
                if !closed {
                    return Err(syn::Error::new_spanned(
                        template,
                        format!("tag template: `{{{inner}` is not closed (write `{{{{` for a brace)"),
                    ));
                }
                let mut path = inner.split('.').map(str::trim);
                let head = path.next().unwrap_or_default();
                if head == "self" {
                    return Err(syn::Error::new_spanned(
                        template,
                        format!(
                            "tag template: `{{{inner}}}`: the receiver is not part of the cache key, so \
                             entries cannot differ by it (those of every receiver would share one key); \
                             take the value as a parameter (`tenant: i64`) and name that (`{{tenant}}`)"
                        ),
                    ));
                }
                if !params.iter().any(|p| *p == head) {
                    let known = match params {
                        [] => "it has none".to_owned(),
                        _ => format!(
                            "they are: {}",
                            params.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                        ),
                    };
                    return Err(syn::Error::new_spanned(
                        template,
                        format!("tag template: `{{{inner}}}` names no parameter of this function ({known})"),
                    ));
                }
                let head = ident(head, template)?;
                let fields = path.map(|field| ident(field, template)).collect::<syn::Result<Vec<_>>>()?;
                fmt.push_str("{}");
                args.push(quote_spanned!(span=> {
                    use #p::tag_value::*;
                    let __cq_value = &#p::tag_value::TagValue(&#head #(.#fields)*);
                    __cq_value.__cq_tag()
                }));
            }
            '}' => {
                return Err(syn::Error::new_spanned(
                    template,
                    "tag template: a lone `}` (write `}}` for a brace)",
                ));
            }
            c => {
                fmt.push(c);
                plain.push(c);
            }
        }
    }
    if args.is_empty() {
        return Ok(quote!(::std::string::String::from(#plain)));
    }
    Ok(quote!(::std::format!(#fmt #(, #args)*)))
}

/// `text` as an identifier (raw ones too: `r#type`), spanned at the template.
fn ident(text: &str, template: &LitStr) -> syn::Result<Ident> {
    let mut ident = syn::parse_str::<Ident>(text).map_err(|_| {
        syn::Error::new_spanned(template, format!("tag template: `{text}` is not a field name"))
    })?;
    ident.set_span(template.span());
    Ok(ident)
}

#[cfg(test)]
mod tests {
    use quote::format_ident;

    use super::*;

    fn fmt(template: &str, params: &[&str]) -> Result<String, String> {
        let lit = LitStr::new(template, proc_macro2::Span::call_site());
        let idents: Vec<Ident> = params.iter().map(|p| format_ident!("{}", p)).collect();
        let refs: Vec<&Ident> = idents.iter().collect();
        format(&lit, &refs, &quote!(p)).map(|t| t.to_string()).map_err(|e| e.to_string())
    }

    /// How a placeholder's value `expr` is rendered.
    fn v(expr: &str) -> String {
        format!(
            "{{ use p :: tag_value :: * ; let __cq_value = & p :: tag_value :: TagValue ({expr}) ; __cq_value . __cq_tag () }}"
        )
    }

    #[test]
    fn templates_become_format_calls() {
        assert_eq!(fmt("users", &[]).unwrap(), r#":: std :: string :: String :: from ("users")"#);
        assert_eq!(fmt("{{x}}", &[]).unwrap(), r#":: std :: string :: String :: from ("{x}")"#);
        assert_eq!(
            fmt("user:{id}", &["id"]).unwrap(),
            format!(r#":: std :: format ! ("user:{{}}" , {})"#, v("& id"))
        );
        assert_eq!(
            fmt("org:{u.org.id}", &["u"]).unwrap(),
            format!(r#":: std :: format ! ("org:{{}}" , {})"#, v("& u . org . id"))
        );
        assert_eq!(
            fmt("{{x}}:{id}", &["id"]).unwrap(),
            format!(r#":: std :: format ! ("{{{{x}}}}:{{}}" , {})"#, v("& id"))
        );
    }

    #[test]
    fn unknown_parameters_and_lone_braces_are_errors() {
        assert!(fmt("user:{nope}", &["id"]).unwrap_err().contains("names no parameter"));
        assert!(fmt("a}b", &[]).unwrap_err().contains("lone"));
        assert!(fmt("{id.1x}", &["id"]).unwrap_err().contains("not a field"));
        assert!(fmt("user:{id", &["id"]).unwrap_err().contains("not closed"));
        assert!(fmt("user:{id}", &[]).unwrap_err().contains("(it has none)"));
        assert!(
            fmt("tenant:{self.tenant}", &["id"])
                .unwrap_err()
                .contains("receiver is not part of the cache key")
        );
    }

    #[test]
    fn raw_identifiers_stay_raw() {
        assert_eq!(
            fmt("{u.r#type}", &["u"]).unwrap(),
            format!(r#":: std :: format ! ("{{}}" , {})"#, v("& u . r#type"))
        );
    }
}
