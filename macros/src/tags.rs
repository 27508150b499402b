//! Tag templates: `"users"`, `"user:{id}"`, `"org:{user.org_id}"` (`{{` and `}}` for braces).
//!
//! A placeholder names a parameter of the function, optionally followed by a field path, and
//! is replaced by its `Display` at call time.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{Ident, LitStr};

/// The expression that formats `template` (a `String`), from the parameters named `params`.
pub fn format(template: &LitStr, params: &[&Ident]) -> syn::Result<TokenStream> {
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
                let inner: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let mut path = inner.split('.').map(str::trim);
                let head = path.next().unwrap_or_default();
                if !params.iter().any(|p| *p == head) {
                    let known = params.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
                    return Err(syn::Error::new_spanned(
                        template,
                        format!(
                            "tag template: `{{{inner}}}` names no parameter of this function (they are: {known})"
                        ),
                    ));
                }
                let head = format_ident!("{}", head, span = span);
                let mut fields = Vec::new();
                for field in path {
                    let ident = syn::parse_str::<Ident>(field).map_err(|_| {
                        syn::Error::new_spanned(
                            template,
                            format!("tag template: `{field}` is not a field name"),
                        )
                    })?;
                    fields.push(format_ident!("{}", ident, span = span));
                }
                fmt.push_str("{}");
                args.push(quote_spanned!(span=> &#head #(.#fields)*));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(template: &str, params: &[&str]) -> Result<String, String> {
        let lit = LitStr::new(template, proc_macro2::Span::call_site());
        let idents: Vec<Ident> = params.iter().map(|p| format_ident!("{}", p)).collect();
        let refs: Vec<&Ident> = idents.iter().collect();
        format(&lit, &refs).map(|t| t.to_string()).map_err(|e| e.to_string())
    }

    #[test]
    fn templates_become_format_calls() {
        assert_eq!(fmt("users", &[]).unwrap(), r#":: std :: string :: String :: from ("users")"#);
        assert_eq!(fmt("{{x}}", &[]).unwrap(), r#":: std :: string :: String :: from ("{x}")"#);
        assert_eq!(fmt("user:{id}", &["id"]).unwrap(), r#":: std :: format ! ("user:{}" , & id)"#);
        assert_eq!(
            fmt("org:{u.org.id}", &["u"]).unwrap(),
            r#":: std :: format ! ("org:{}" , & u . org . id)"#
        );
        assert_eq!(fmt("{{x}}:{id}", &["id"]).unwrap(), r#":: std :: format ! ("{{x}}:{}" , & id)"#);
    }

    #[test]
    fn unknown_parameters_and_lone_braces_are_errors() {
        assert!(fmt("user:{nope}", &["id"]).unwrap_err().contains("names no parameter"));
        assert!(fmt("a}b", &[]).unwrap_err().contains("lone"));
        assert!(fmt("{id.1x}", &["id"]).unwrap_err().contains("not a field"));
    }
}
