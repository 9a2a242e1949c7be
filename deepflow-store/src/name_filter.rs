//! Name filters become id filters: in a `WHERE` (and in the filters pushed into a scan),
//! `dict_get('pod', pod_id_1) = 'web-1'` — what `pod_1 = 'web-1'` on a name view becomes once
//! the view is inlined — is rewritten to `pod_id_1 = 7` (or `pod_id_1 IN (7, 9)` when several ids
//! carry that name, or `false` when none does), and `... IN ('a', 'b')` likewise. The scan then
//! compares integers instead of building names, and Parquet's row-group statistics and page
//! index on the id column can skip data.
//!
//! Only top-level conjuncts of a filter are rewritten: there a NULL (what `dict_get` returns for
//! id 0 and unknown ids) and `false` both drop the row, so `id = 7` keeps exactly the rows
//! `dict_get(...) = 'web-1'` keeps; under `NOT` or `OR` they would differ. Ids are looked up in
//! the dictionaries loaded when the query is planned (the same ones `dict_get` uses, unless
//! `reload_tags` runs between planning and execution).

use std::any::Any;

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, LogicalPlan, Operator};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::query::{DictGet, Shared, TagNames};

/// The optimizer rule; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct NameFilterToIds {
    pub(crate) names: Shared,
}

impl OptimizerRule for NameFilterToIds {
    fn name(&self) -> &str {
        "deepflow_name_filter_to_ids"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let names = || self.names.read().unwrap_or_else(|e| e.into_inner()).clone();
        match plan {
            LogicalPlan::Filter(f) => {
                let (conjuncts, changed) = rewrite_conjuncts(&names(), vec![f.predicate.clone()]);
                if !changed {
                    return Ok(Transformed::no(LogicalPlan::Filter(f)));
                }
                let predicate =
                    conjunction(conjuncts).unwrap_or_else(|| Expr::Literal(ScalarValue::Boolean(Some(true)), None));
                Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(predicate, f.input)?)))
            }
            LogicalPlan::TableScan(mut scan) => {
                let (filters, changed) = rewrite_conjuncts(&names(), std::mem::take(&mut scan.filters));
                scan.filters = filters;
                Ok(Transformed::new_transformed(LogicalPlan::TableScan(scan), changed))
            }
            other => Ok(Transformed::no(other)),
        }
    }
}

/// Splits `exprs` into conjuncts and rewrites each; true when any changed.
fn rewrite_conjuncts(names: &TagNames, exprs: Vec<Expr>) -> (Vec<Expr>, bool) {
    let mut changed = false;
    let out = exprs
        .into_iter()
        .flat_map(split_conjunction_owned)
        .map(|e| match rewrite_one(names, &e) {
            Some(r) => {
                changed = true;
                r
            }
            None => e,
        })
        .collect();
    (out, changed)
}

/// `dict_get(kind, id) = 'name'` (either side), `dict_get(kind, id) IN ('a', ...)`.
fn rewrite_one(names: &TagNames, e: &Expr) -> Option<Expr> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let ((kind, arg), name) = match (dict_call(left), literal_str(right)) {
                (Some(c), Some(n)) => (c, n),
                _ => (dict_call(right)?, literal_str(left)?),
            };
            let ids = names.ids_of(&kind, &name)?;
            Some(ids_filter(arg, ids))
        }
        Expr::InList(InList { expr, list, negated: false }) => {
            let (kind, arg) = dict_call(expr)?;
            let mut ids = Vec::new();
            for item in list {
                ids.extend(names.ids_of(&kind, &literal_str(item)?)?);
            }
            ids.sort_unstable();
            ids.dedup();
            Some(ids_filter(arg, ids))
        }
        _ => None,
    }
}

/// `arg = id`, `arg IN (ids)`, or `false` for no id.
fn ids_filter(arg: Expr, ids: Vec<u32>) -> Expr {
    let lit = |id: u32| Expr::Literal(ScalarValue::UInt32(Some(id)), None);
    match ids.as_slice() {
        [] => Expr::Literal(ScalarValue::Boolean(Some(false)), None),
        [one] => Expr::BinaryExpr(BinaryExpr::new(Box::new(arg), Operator::Eq, Box::new(lit(*one)))),
        many => Expr::InList(InList::new(Box::new(arg), many.iter().map(|&i| lit(i)).collect(), false)),
    }
}

/// (kind, id argument) of a call of our `dict_get` with a constant kind, seen through casts
/// and aliases.
pub(crate) fn dict_call(e: &Expr) -> Option<(String, Expr)> {
    match e {
        Expr::Cast(c) => dict_call(&c.expr),
        Expr::TryCast(c) => dict_call(&c.expr),
        Expr::Alias(a) => dict_call(&a.expr),
        Expr::ScalarFunction(f) => {
            let inner: &dyn Any = f.func.inner().as_ref();
            inner.downcast_ref::<DictGet>()?;
            match f.args.as_slice() {
                [kind, arg] => Some((literal_str(kind)?, arg.clone())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A constant string (also inside a dictionary scalar or a cast).
fn literal_str(e: &Expr) -> Option<String> {
    fn of(v: &ScalarValue) -> Option<String> {
        match v {
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                Some(s.clone())
            }
            ScalarValue::Dictionary(_, inner) => of(inner),
            _ => None,
        }
    }
    match e {
        Expr::Literal(v, _) => of(v),
        Expr::Cast(c) => literal_str(&c.expr),
        Expr::TryCast(c) => literal_str(&c.expr),
        _ => None,
    }
}
