//! The console's static files, compiled into the binary. Public (no key): they hold no data.
use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// Only this origin's scripts, styles, images (and `blob:` photos fetched with the key), no
/// framing: the page never loads anything from elsewhere.
const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                   connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/index.html"),
    },
    Asset {
        name: "product.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/product.html"),
    },
    Asset {
        name: "outbox.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/outbox.html"),
    },
    Asset {
        name: "recognize.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/recognize.html"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/console.css"),
    },
];

fn serve(name: &str) -> HttpResponse {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => HttpResponse::Ok()
            .content_type(a.content_type)
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            // small files, compiled in: revalidate so a new binary's files are picked up
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(a.body),
        None => crate::api::Problem::not_found(format!(
            "no console file {name:?}; the console starts at /console/"
        ))
        .into_response(),
    }
}

pub(crate) async fn redirect_to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/console/"))
        .finish()
}

pub(crate) async fn index() -> HttpResponse {
    serve("index.html")
}

pub(crate) async fn file(name: web::Path<String>) -> HttpResponse {
    serve(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_loads_the_script_and_the_stylesheet_from_this_origin() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".html")) {
            assert!(
                a.body
                    .contains(r#"<script src="console.js" defer></script>"#),
                "{}",
                a.name
            );
            assert!(
                a.body
                    .contains(r#"<link rel="stylesheet" href="console.css">"#),
                "{}",
                a.name
            );
            assert!(!a.body.contains("http://") && !a.body.contains("https://"));
            assert!(!a.body.contains("style="), "{}: inline style (CSP)", a.name);
            assert!(
                !a.body.contains("onclick"),
                "{}: inline handler (CSP)",
                a.name
            );
        }
        let js = ASSETS
            .iter()
            .find(|a| a.name == "console.js")
            .map(|a| a.body);
        assert!(js.is_some_and(|js| !js.contains("http://") && !js.contains("https://")));
    }
}
