//! Job history (`/data/jobs`): every job of the workspace the user may see
//! (another member's personal connection's jobs are not listed), filtered
//! by provider, object, status and dates in the URL, sorted and paged by
//! plain links, times in the workspace's zone.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::kit::{FormState, Table, TableQuery};
use super::{Layout, with_status};
use crate::app::AppState;
use crate::auth::extract::CurrentTenant;
use crate::connections::Viewer;
use crate::error::{AppError, AppResult};
use crate::input::SingleLine;
use crate::jobs::store::JobFilter;
use crate::jobs::{Job, JobStatus};
use crate::storage::now;
use crate::tenancy::zone::Zone;
use crate::web::extract::ApiQuery;

const PAGE_SIZE: usize = 50;
/// Newest jobs a filtered view reads; narrower dates reach older ones.
const MOST: i64 = 2_000;
const FILTERS: [&str; 5] = ["provider", "object", "status", "from", "to"];

/// `?provider=&object=&status=&from=&to=` plus the table's own parameters.
#[derive(Debug, Default, Deserialize)]
pub struct JobsQuery {
    page: Option<SingleLine>,
    sort: Option<SingleLine>,
    dir: Option<SingleLine>,
    provider: Option<SingleLine>,
    object: Option<SingleLine>,
    status: Option<SingleLine>,
    from: Option<SingleLine>,
    to: Option<SingleLine>,
}

impl JobsQuery {
    fn get(&self, name: &str) -> &str {
        let value = match name {
            "provider" => &self.provider,
            "object" => &self.object,
            "status" => &self.status,
            "from" => &self.from,
            "to" => &self.to,
            _ => &None,
        };
        value.as_deref().map_or("", str::trim)
    }
}

pub struct JobRow {
    pub id: Uuid,
    pub provider: String,
    pub provider_name: String,
    pub object: String,
    pub status: String,
    pub created: String,
    pub started: String,
    pub duration: String,
    /// `fetched N` and the like, from the job's counts.
    pub counts: String,
    pub error: Option<String>,
    created_at: OffsetDateTime,
    seconds: Option<i64>,
}

/// A labelled option of a filter select.
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// One filter select: its parameter, label and options ("Any" first).
pub struct Select {
    pub name: &'static str,
    pub label: &'static str,
    pub options: Vec<Choice>,
}

#[derive(Template, WebTemplate)]
#[template(path = "jobs.html")]
pub struct JobsPage {
    layout: Layout,
    rows: Vec<JobRow>,
    table: Table,
    filters: FormState,
    selects: Vec<Select>,
    filtered: bool,
    /// The view reached the `MOST` cap: older jobs exist beyond it.
    capped: bool,
}

impl JobsPage {
    fn selected(&self, name: &str, value: &str) -> bool {
        self.filters.value(name) == value
    }
}

type JobOrder = fn(&JobRow, &JobRow) -> std::cmp::Ordering;
const COLUMNS: [(&str, JobOrder); 5] = [
    ("created", |a, b| a.created_at.cmp(&b.created_at)),
    ("provider", |a, b| {
        (a.provider_name.to_lowercase(), &a.object)
            .cmp(&(b.provider_name.to_lowercase(), &b.object))
    }),
    ("status", |a, b| a.status.cmp(&b.status)),
    ("duration", |a, b| a.seconds.cmp(&b.seconds)),
    ("counts", |a, b| a.counts.cmp(&b.counts)),
];

/// `4 s`, `3 min 04 s`, `2 h 05 min`.
pub fn duration_text(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// How long a job ran, or has been running (`None`: not started).
pub fn run_seconds(job: &Job, at: OffsetDateTime) -> Option<i64> {
    let started = job.started_at?;
    let end = job.finished_at.unwrap_or(at);
    Some((end - started).whole_seconds())
}

fn parse_day(field: &str, raw: &str) -> AppResult<Option<Date>> {
    if raw.is_empty() {
        return Ok(None);
    }
    Date::parse(
        raw,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map(Some)
    .map_err(|_| AppError::validation(field, "expected a date as YYYY-MM-DD"))
}

/// `from` and `to` days (YYYY-MM-DD, in the workspace's zone) as the
/// instants they start and end at; "to" includes its whole day.
pub(super) fn day_range(
    zone: &Zone,
    from_raw: &str,
    to_raw: &str,
) -> AppResult<(Option<OffsetDateTime>, Option<OffsetDateTime>)> {
    let from = parse_day("from", from_raw)?;
    let to = parse_day("to", to_raw)?;
    if let (Some(f), Some(t)) = (from, to)
        && t < f
    {
        return Err(AppError::validation(
            "to",
            "must not be before the from date",
        ));
    }
    let bad_day = |field: &str| {
        AppError::validation(
            field,
            "this day can't be shown in the workspace's time zone",
        )
    };
    let from = from
        .map(|d| zone.start_of_day(d).ok_or_else(|| bad_day("from")))
        .transpose()?;
    let until = to
        .map(|d| {
            d.next_day()
                .and_then(|next| zone.start_of_day(next))
                .ok_or_else(|| bad_day("to"))
        })
        .transpose()?;
    Ok((from, until))
}

/// The query's filters, checked; errors name the parameter.
fn filter<'a>(state: &AppState, zone: &Zone, q: &'a JobsQuery) -> AppResult<JobFilter<'a>> {
    let provider = Some(q.get("provider")).filter(|p| !p.is_empty());
    if let Some(p) = provider
        && state.providers.get(p).is_none()
    {
        return Err(AppError::validation(
            "provider",
            "not a provider of this server",
        ));
    }
    let object = Some(q.get("object")).filter(|o| !o.is_empty());
    if let Some(o) = object
        && !state
            .providers
            .iter()
            .any(|p| p.meta.objects.iter().any(|x| x.key == o))
    {
        return Err(AppError::validation(
            "object",
            "no provider has this object",
        ));
    }
    let status = Some(q.get("status")).filter(|s| !s.is_empty());
    if let Some(s) = status
        && JobStatus::parse(s).is_none()
    {
        return Err(AppError::validation("status", "not a job status"));
    }
    let (from, until) = day_range(zone, q.get("from"), q.get("to"))?;
    Ok(JobFilter {
        provider,
        object,
        status,
        from,
        until,
    })
}

pub async fn page(
    State(state): State<AppState>,
    current: CurrentTenant,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> AppResult<Response> {
    let CurrentTenant {
        user,
        session,
        tenant,
    } = current;
    let layout = Layout::signed_in(&state, &session, &user, &tenant).await?;
    let typed = FormState::with_values(FILTERS.iter().map(|f| (*f, q.get(f))));
    let (jobs, filters, status) = match filter(&state, &layout.zone, &q) {
        Ok(f) => (
            state
                .store
                .search_jobs(Viewer::from(&tenant), &f, MOST)
                .await?,
            typed,
            None,
        ),
        Err(err @ AppError::Validation { .. }) => {
            let status = err.status();
            (Vec::new(), typed.with_error(&err, &FILTERS), Some(status))
        }
        Err(err) => return Err(err),
    };
    let capped = i64::try_from(jobs.len()).is_ok_and(|n| n >= MOST);
    let at = now();
    let zone = &layout.zone;
    let mut rows: Vec<JobRow> = jobs
        .iter()
        .map(|j| {
            let seconds = run_seconds(j, at);
            let finished = j.status().is_finished();
            JobRow {
                id: j.id,
                provider: j.provider.clone(),
                provider_name: state
                    .providers
                    .get(&j.provider)
                    .map_or_else(|| j.provider.clone(), |p| p.meta.display_name.clone()),
                object: j.object.clone().unwrap_or_default(),
                status: j.status.replace('_', " "),
                created: zone.at(&j.created_at),
                started: zone.at_opt(&j.started_at, "—"),
                duration: match seconds {
                    Some(s) if finished => duration_text(s),
                    Some(s) => format!("{} so far", duration_text(s)),
                    None => "—".to_owned(),
                },
                counts: j
                    .counts
                    .0
                    .get("fetched")
                    .and_then(serde_json::Value::as_u64)
                    .map_or_else(String::new, |n| format!("{n} fetched")),
                error: j.error.as_ref().map(|e| crate::input::excerpt(e, 120)),
                created_at: j.created_at,
                seconds,
            }
        })
        .collect();
    // Newest first unless the person chose an order.
    let filtered = FILTERS.iter().any(|f| !q.get(f).is_empty());
    let table_query = TableQuery {
        page: q.page.map(String::from),
        dir: q
            .dir
            .map(String::from)
            .or_else(|| q.sort.is_none().then(|| "desc".to_owned())),
        sort: q.sort.map(String::from),
    };
    let table = Table::apply(&table_query, &COLUMNS, "created", PAGE_SIZE, &mut rows)
        .with_params(&FILTERS.map(|f| (f, filters.value(f))));
    let mut objects: Vec<&str> = state
        .providers
        .iter()
        .flat_map(|p| p.meta.objects.iter().map(|o| o.key.as_str()))
        .collect();
    objects.sort_unstable();
    objects.dedup();
    let selects = vec![
        Select {
            name: "provider",
            label: "Provider",
            options: state
                .providers
                .iter()
                .map(|p| Choice {
                    value: p.meta.key.clone(),
                    label: p.meta.display_name.clone(),
                })
                .collect(),
        },
        Select {
            name: "object",
            label: "Object",
            options: objects
                .into_iter()
                .map(|o| Choice {
                    value: o.to_owned(),
                    label: o.replace('_', " "),
                })
                .collect(),
        },
        Select {
            name: "status",
            label: "Status",
            options: JobStatus::ALL
                .iter()
                .map(|s| Choice {
                    value: s.as_str().to_owned(),
                    label: s.as_str().replace('_', " "),
                })
                .collect(),
        },
    ];
    let page = JobsPage {
        filtered,
        layout,
        rows,
        table,
        selects,
        filters,
        capped,
    };
    Ok(match status {
        Some(status) => with_status(status, page),
        None => page.into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(0), "0 s");
        assert_eq!(duration_text(59), "59 s");
        assert_eq!(duration_text(184), "3 min 04 s");
        assert_eq!(duration_text(7500), "2 h 05 min");
        assert_eq!(duration_text(-3), "0 s");
    }

    #[test]
    fn excerpts_cut_on_characters() {
        use crate::input::excerpt;
        assert_eq!(excerpt("äöü", 2), "äö…");
        assert_eq!(excerpt("ab", 2), "ab");
    }
}
