"""InvenTree's write operations with its validation rules and messages: parts, stock, adjustments, parameters.

Each function takes the state, the request data and the acting user, raises :class:`farmsync_sim.drf.ApiError`
with InvenTree's error body, and returns the record it wrote. Callers hold no lock; these functions take it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from farmsync_sim import units
from farmsync_sim.common import stable_hex, utcnow
from farmsync_sim.drf import (
    BLANK,
    REQUIRED,
    ApiError,
    FieldInvalid,
    invalid_pk,
    parse_bool,
    parse_char,
    parse_decimal,
    parse_pk,
)
from farmsync_sim.inventree_state import (
    CATEGORY_DEFAULTS,
    FINAL_REMOVAL_TRACKED_API,
    GENERIC_PARAMETERS_API,
    LOCATION_DEFAULTS,
    PART_DEFAULTS,
    STOCK_DEFAULTS,
    STOCK_STATUS,
    STRUCTURAL_TEXT_API,
    TEMPLATE_DEFAULTS,
    TRANSFER_MERGE_API,
    InvenTreeState,
)

Parser = Callable[[Any], Any]

PART_FLAGS = (
    "active",
    "component",
    "trackable",
    "assembly",
    "purchaseable",
    "salable",
    "virtual",
    "is_template",
    "testable",
    "locked",
)

IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
INVALID_IMAGE = "Upload a valid image. The file you uploaded was either not an image or a corrupted image."


def _validate(
    data: dict[str, Any], parsers: dict[str, Parser], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run each present field through its parser; collect DRF-style ``{field: [messages]}`` errors."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    for name in required:
        if name not in data:
            errors[name] = [REQUIRED]
    for name, parser in parsers.items():
        if name not in data or name in errors:
            continue
        try:
            clean[name] = parser(data[name])
        except FieldInvalid as exc:
            errors[name] = exc.messages
    if errors:
        raise ApiError(400, errors)
    return clean


def _nullable(parser: Parser) -> Parser:
    return lambda value: None if value is None else parser(value)


def _char(max_length: int | None = None, *, allow_blank: bool = True) -> Parser:
    return lambda value: parse_char(value, max_length=max_length, allow_blank=allow_blank)


def _pk(table: dict[int, Any]) -> Parser:
    return lambda value: parse_pk(value, table)


def _fmt5(value: Decimal) -> str:
    return f"{value:.5f}"


# ------------------------------------------------------------------------------------------ parts


def _part_parsers(state: InvenTreeState) -> dict[str, Parser]:
    def category(value: Any) -> int | None:
        pk = parse_pk(value, state.categories)
        if pk is not None and state.categories[pk]["structural"]:
            # The message a real API-530 server gives (inventree-api.md §6).
            raise FieldInvalid("Parts cannot be assigned to structural part categories!")
        return pk

    parsers: dict[str, Parser] = {
        "name": _char(100, allow_blank=False),
        "IPN": _nullable(_char(100)),
        "description": _char(250),
        "revision": _char(100),
        "keywords": _char(250),
        "link": _char(2000),
        "units": _char(20),
        "notes": _nullable(_char(50000)),
        "category": category,
        "default_location": _pk(state.locations),
        "minimum_stock": lambda v: float(parse_decimal(v, places=6, min_value=0)),
    }
    parsers.update(dict.fromkeys(PART_FLAGS, parse_bool))
    return parsers


def _check_part_unique(state: InvenTreeState, values: dict[str, Any], exclude: int | None = None) -> None:
    """(name, IPN, revision) must be unique; a null IPN skips the check, as Django's unique_together does."""
    if values.get("IPN") is None:
        return
    key = (values["name"], values["IPN"], values.get("revision", ""))
    for other in state.parts_named(*key):
        if other["pk"] != exclude and (other["name"], other["IPN"], other["revision"]) == key:
            raise ApiError(
                400, {"non_field_errors": ["The fields name, IPN, revision must make a unique set."]}
            )


def create_part(state: InvenTreeState, data: dict[str, Any], user: int | None) -> dict[str, Any]:
    with state.lock:
        clean = _validate(data, _part_parsers(state), required=("name",))
        record = {**PART_DEFAULTS, **clean}
        _check_part_unique(state, record)
        record.update(pk=state.next_pk("parts"), creation_date=utcnow(), creation_user=user)
        state.parts[record["pk"]] = record
        state.file_part(record)
        return record


def update_part(state: InvenTreeState, part: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """PATCH a part from JSON; ``{"image": null}`` clears the image (the file goes when no part uses it)."""
    with state.lock:
        clean = _validate(data, _part_parsers(state))
        if "image" in data and data["image"] is None:
            old = part["image"]
            part["image"] = None
            state.file_part(part)
            if old and not any(p["image"] == old for p in state.parts_with_image(old)):
                state.part_images.pop(old, None)
        _check_part_unique(state, {**part, **clean}, exclude=part["pk"])
        part.update(clean)
        state.file_part(part)
        return part


def check_image(content: bytes) -> None:
    """Refuse what Pillow could not open; the file's magic bytes stand in for Pillow here."""
    is_webp = content[:4] == b"RIFF" and content[8:12] == b"WEBP"
    if not (is_webp or any(content.startswith(m) for m in IMAGE_MAGIC)) or len(content) < 16:
        raise ApiError(400, {"image": [INVALID_IMAGE]})


def set_part_image(state: InvenTreeState, part: dict[str, Any], filename: str | None, content: bytes) -> None:
    """Store an uploaded image as ``part_images/<name>``; a name another part uses gets a suffix."""
    check_image(content)
    name = (filename or "image.png").replace("\\", "/").rsplit("/", 1)[-1] or "image.png"
    with state.lock:
        path = f"part_images/{name}"
        taken = {p["image"] for p in state.parts_with_image(path) if p["pk"] != part["pk"] and p["image"]}
        if path in taken:
            # Django keeps the name and adds a random 7-character suffix when it is taken.
            stem, dot, ext = name.rpartition(".")
            suffix = stable_hex(path, part["pk"], len(state.part_images), length=7)
            path = f"part_images/{stem or ext}_{suffix}{dot}{ext if stem else ''}"
        old = part["image"]
        part["image"] = path
        state.file_part(part)
        state.part_images[path] = content
        if old and old != path and not any(p["image"] == old for p in state.parts_with_image(old)):
            state.part_images.pop(old, None)


# ------------------------------------------------------------------------------------------ categories, locations


def create_tree_node(state: InvenTreeState, table_name: str, data: dict[str, Any]) -> dict[str, Any]:
    """A part category (``categories``) or stock location (``locations``)."""
    with state.lock:
        table: dict[int, dict[str, Any]] = getattr(state, table_name)
        parsers: dict[str, Parser] = {
            "name": _char(100, allow_blank=False),
            "description": _char(250),
            "parent": _pk(table),
            "structural": parse_bool,
            "icon": _char(100),
        }
        if table_name == "locations":
            parsers["external"] = parse_bool
        else:
            parsers["default_location"] = _pk(state.locations)
            parsers["default_keywords"] = _nullable(_char(250))
        clean = _validate(data, parsers, required=("name",))
        defaults = LOCATION_DEFAULTS if table_name == "locations" else CATEGORY_DEFAULTS
        record = {**defaults, **clean, "pk": state.next_pk(table_name)}
        table[record["pk"]] = record
        return record


# ------------------------------------------------------------------------------------------ stock


def _location_parser(state: InvenTreeState) -> Parser:
    def location(value: Any) -> int | None:
        pk = parse_pk(value, state.locations)
        if pk is not None and state.locations[pk]["structural"]:
            raise FieldInvalid("Stock items cannot be located into structural stock locations!")
        return pk

    return location


def _status_value(value: Any) -> int:
    """Only a JSON integer that is a known code is honoured; anything else is silently stored as 10 (OK)."""
    if isinstance(value, int) and not isinstance(value, bool) and value in STOCK_STATUS:
        return value
    return 10


def _quantity(value: Any) -> Decimal:
    number = parse_decimal(value, invalid="Invalid value")
    if number < 0:
        raise FieldInvalid(
            "Ensure this value is greater than or equal to 0.", "Quantity must be greater than zero"
        )
    return number


def _stock_parsers(state: InvenTreeState) -> dict[str, Parser]:
    return {
        "quantity": _quantity,
        "location": _location_parser(state),
        "batch": _nullable(_char(100)),
        "status": _status_value,
        "notes": _nullable(_char(50000)),
        "delete_on_deplete": parse_bool,
        "packaging": _char(50),
        "link": _char(2000),
        "expiry_date": _nullable(_char(10)),
        "purchase_price": _nullable(lambda v: str(parse_decimal(v, places=6))),
    }


def create_stock(state: InvenTreeState, data: dict[str, Any], user: int | None) -> dict[str, Any]:
    """POST /api/stock/: checks quantity, then part (bare-string errors), then the serializer fields.

    Assumption: ``serial_numbers`` is ignored (no trackable parts are simulated), so one item is created.
    """
    with state.lock:
        if data.get("quantity") is None:
            raise ApiError(400, {"quantity": "Quantity is required"})
        try:
            part_pk = int(data.get("part"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            part_pk = -1
        if isinstance(data.get("part"), bool) or part_pk not in state.parts:
            raise ApiError(400, {"part": "Valid part must be supplied"})
        clean = _validate(data, _stock_parsers(state))
        quantity = clean.pop("quantity")
        if "location" not in data:
            clean["location"] = state.parts[part_pk]["default_location"]
        record = {
            **STOCK_DEFAULTS,
            **clean,
            "batch": clean.get("batch") or "",
            "notes": clean.get("notes") or "",
            "pk": state.next_pk("stock_items"),
            "part": part_pk,
            "quantity": float(quantity),
            "updated": utcnow(),
        }
        state.stock_items[record["pk"]] = record
        state.file_stock(record)
        deltas: dict[str, Any] = {"status": record["status"], "quantity": record["quantity"]}
        if record["location"] is not None:
            deltas["location"] = record["location"]
        state.track(record, 1, deltas=deltas, user=user)
        return record


def update_stock(state: InvenTreeState, item: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """PATCH a stock item.

    Assumption: ``quantity`` is not changed by PATCH (use add/remove); ``status`` follows the create rule.
    """
    with state.lock:
        parsers = _stock_parsers(state)
        parsers.pop("quantity")
        clean = _validate(data, parsers)
        if "batch" in clean:
            clean["batch"] = clean["batch"] or ""
        if "notes" in clean:
            clean["notes"] = clean["notes"] or ""
        item.update(clean)
        item["updated"] = utcnow()
        state.file_stock(item)
        return item


# ------------------------------------------------------------------------------------------ adjustments


def adjust_stock(state: InvenTreeState, kind: str, data: dict[str, Any], user: int | None) -> dict[str, Any]:
    """``/api/stock/remove/``, ``/add/`` or ``/transfer/``: validate everything first, then apply in pk order.

    Returns the echoed, validated request (quantities as 5-decimal strings), which is what InvenTree answers.
    """
    with state.lock:
        rows, notes, target = _validate_adjustment(state, kind, data)
        results: dict[int, int | None] = {}
        for row in sorted(rows, key=lambda r: r["pk"]):
            item = state.stock_items.get(row["pk"])
            results[row["index"]] = row["pk"]
            if item is None:
                continue
            if kind == "remove":
                results[row["index"]] = _remove(state, item, row["quantity"], notes, user)
            elif kind == "add":
                _add(state, item, row["quantity"], notes, user)
            else:
                _transfer(state, item, row, target, notes, user)
        echoed: list[dict[str, Any]] = []
        for row in rows:
            echo = {
                "pk": results[row["index"]],
                "quantity": _fmt5(row["quantity"]),
                "status": row.get("status"),
            }
            echo.update({k: row[k] for k in ("batch", "packaging") if k in row})
            echoed.append(echo)
        response: dict[str, Any] = {"items": echoed, "notes": notes}
        if kind == "transfer":
            response["location"] = target
        return response


def _validate_adjustment(
    state: InvenTreeState, kind: str, data: dict[str, Any]
) -> tuple[list[dict[str, Any]], str, int | None]:
    errors: dict[str, Any] = {}
    items = data.get("items")
    rows: list[dict[str, Any]] = []
    if items is None:
        errors["items"] = [REQUIRED]
    elif not isinstance(items, list):
        errors["items"] = [f'Expected a list of items but got type "{type(items).__name__}".']
    else:
        item_errors: list[dict[str, list[str]]] = []
        for index, raw in enumerate(items):
            row, problems = _validate_adjustment_row(state, kind, raw)
            row["index"] = index
            rows.append(row)
            item_errors.append(problems)
        if any(item_errors):
            errors["items"] = item_errors
    notes = ""
    if data.get("notes") is not None:
        try:
            notes = parse_char(data["notes"])
        except FieldInvalid as exc:
            errors["notes"] = exc.messages
    target: int | None = None
    if kind == "transfer":
        target, location_errors = _transfer_target(state, data)
        if location_errors:
            errors["location"] = location_errors
    if errors:
        raise ApiError(400, errors)
    if not rows:
        raise ApiError(400, {"non_field_errors": ["A list of stock items must be provided"]})
    return rows, notes, target


def _validate_adjustment_row(
    state: InvenTreeState, kind: str, raw: Any
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    problems: dict[str, list[str]] = {}
    row: dict[str, Any] = {}
    if not isinstance(raw, dict):
        return row, {
            "non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(raw).__name__}."]
        }
    if "pk" not in raw:
        problems["pk"] = [REQUIRED]
    else:
        try:
            row["pk"] = parse_pk(raw["pk"], state.stock_items, allow_null=False)
        except FieldInvalid as exc:
            problems["pk"] = exc.messages
    if "quantity" not in raw:
        problems["quantity"] = [REQUIRED]
    else:
        try:
            quantity = parse_decimal(raw["quantity"], places=5, min_value=0)
            # Assumption (from the API 530 source notes): a transfer needs a positive quantity.
            if kind == "transfer" and quantity <= 0:
                raise FieldInvalid("Quantity must be greater than zero")
            row["quantity"] = quantity
        except FieldInvalid as exc:
            problems["quantity"] = exc.messages
    if raw.get("status") is not None:
        row["status"] = raw["status"]
    for optional in ("batch", "packaging"):
        if optional in raw:
            row[optional] = raw[optional]
    if "merge" in raw and kind == "transfer" and state.api_version >= TRANSFER_MERGE_API:
        try:
            row["merge"] = parse_bool(raw["merge"])
        except FieldInvalid as exc:
            problems["merge"] = exc.messages
    return row, problems


def _transfer_target(state: InvenTreeState, data: dict[str, Any]) -> tuple[int | None, list[str]]:
    if data.get("location") is None:
        return None, [REQUIRED] if "location" not in data else ["This field may not be null."]
    try:
        target = parse_pk(data["location"], state.locations, allow_null=False)
    except FieldInvalid as exc:
        return None, exc.messages
    assert target is not None
    if state.locations[target]["structural"]:
        if state.api_version < STRUCTURAL_TEXT_API:
            # The structural location is filtered out of the field's queryset, so it reads as missing.
            return None, [invalid_pk(data["location"])]
        return None, ["Structural locations cannot be assigned stock items"]
    return target, []


def _set_quantity(item: dict[str, Any], value: Decimal) -> None:
    item["quantity"] = float(round(value, 5))
    item["updated"] = utcnow()


def _remove(
    state: InvenTreeState, item: dict[str, Any], quantity: Decimal, notes: str, user: int | None
) -> int | None:
    """take_stock: skip <= 0, clamp to what is there; an emptied delete_on_deplete item is deleted."""
    if quantity <= 0:
        return item["pk"]
    current = Decimal(str(item["quantity"]))
    taken = min(quantity, current)
    remaining = current - taken
    _set_quantity(item, remaining)
    deltas = {"removed": float(taken), "quantity": float(remaining)}
    if remaining <= 0 and item["delete_on_deplete"]:
        if state.api_version >= FINAL_REMOVAL_TRACKED_API:
            state.track(item, 12, notes=notes, deltas=deltas, user=user, deleted=True)
        state.delete_stock_item(item["pk"])
        return None
    state.track(item, 12, notes=notes, deltas=deltas, user=user)
    return item["pk"]


def _add(
    state: InvenTreeState, item: dict[str, Any], quantity: Decimal, notes: str, user: int | None
) -> None:
    if quantity <= 0:
        return
    total = Decimal(str(item["quantity"])) + quantity
    _set_quantity(item, total)
    state.track(item, 11, notes=notes, deltas={"added": float(quantity), "quantity": float(total)}, user=user)


def _transfer(
    state: InvenTreeState,
    item: dict[str, Any],
    row: dict[str, Any],
    target: int | None,
    notes: str,
    user: int | None,
) -> None:
    """Move the whole item (same pk) or split off the requested quantity into a new item at ``target``."""
    quantity: Decimal = row["quantity"]
    current = Decimal(str(item["quantity"]))
    overrides = {k: row[k] for k in ("batch", "packaging") if k in row}
    if "status" in row:
        overrides["status"] = _status_value(row["status"])
    if quantity < current:
        moved = _split(state, item, quantity, target, notes, user)
    else:
        code = 25 if item["location"] == target else 20
        item["location"] = target
        item["updated"] = utcnow()
        state.track(item, code, notes=notes, deltas={"location": target}, user=user)
        moved = item
    moved.update(overrides)
    state.file_stock(moved)
    if row.get("merge"):
        _merge_into_existing(state, moved, notes, user)


def _split(
    state: InvenTreeState,
    item: dict[str, Any],
    quantity: Decimal,
    target: int | None,
    notes: str,
    user: int | None,
) -> dict[str, Any]:
    child = {
        **item,
        "pk": state.next_pk("stock_items"),
        "parent": item["pk"],
        "quantity": float(quantity),
        "location": target if target is not None else item["location"],
        "updated": utcnow(),
    }
    state.stock_items[child["pk"]] = child
    state.file_stock(child)
    for entry in [state.tracking[pk] for pk in sorted(state.tracking_pks(item["pk"]))]:
        copy = {
            **entry,
            "pk": state.next_pk("tracking"),
            "item": child["pk"],
            "deltas": dict(entry["deltas"]),
        }
        state.tracking[copy["pk"]] = copy
        state.file_tracking(copy)
    child_deltas: dict[str, Any] = {"stockitem": item["pk"]}
    if target is not None:
        child_deltas["location"] = target
    state.track(child, 40, notes=notes, deltas=child_deltas, user=user)
    remaining = Decimal(str(item["quantity"])) - quantity
    _set_quantity(item, remaining)
    parent_deltas: dict[str, Any] = {
        "stockitem": child["pk"],
        "removed": float(quantity),
        "quantity": float(remaining),
    }
    if target is not None:
        parent_deltas["location"] = target
    state.track(item, 42, notes=notes, deltas=parent_deltas, user=user)
    return child


def _merge_into_existing(state: InvenTreeState, moved: dict[str, Any], notes: str, user: int | None) -> None:
    """Assumption: merge folds into the lowest-pk item at the destination with the same part, batch and status."""
    for other in sorted(state.stock_items.values(), key=lambda i: i["pk"]):
        if other["pk"] != moved["pk"] and all(
            other[k] == moved[k] for k in ("part", "location", "batch", "status")
        ):
            total = Decimal(str(other["quantity"])) + Decimal(str(moved["quantity"]))
            _set_quantity(other, total)
            state.track(other, 45, notes=notes, deltas={"quantity": float(total)}, user=user)
            state.delete_stock_item(moved["pk"])
            return


# ------------------------------------------------------------------------------------------ parameters

MODEL_TYPES = {
    "part": "part.part",
    "part.part": "part.part",
    "partcategory": "part.partcategory",
    "part.partcategory": "part.partcategory",
    "stockitem": "stock.stockitem",
    "stock.stockitem": "stock.stockitem",
}


def _model_type(value: Any) -> str | None:
    if value is None or value == "":
        return None
    found = MODEL_TYPES.get(str(value).strip().lower())
    if found is None:
        # Assumption: the message for an unknown content type.
        raise FieldInvalid("Content type not found")
    return found


def _template_name_unique(state: InvenTreeState, name: str, exclude: int | None = None) -> None:
    for other in state.templates.values():
        if other["pk"] != exclude and other["name"].lower() == name.lower():
            raise ApiError(400, {"name": ["Parameter template name must be unique"]})


def _units(value: Any) -> str:
    text = parse_char(value, max_length=25)
    if text and not units.is_known_unit(text):
        # Assumption: the message for units pint cannot read.
        raise FieldInvalid("Invalid physical unit")
    return text


def _template_parsers() -> dict[str, Parser]:
    return {
        "name": _char(100, allow_blank=False),
        "units": _units,
        "description": _char(250),
        "checkbox": parse_bool,
        "choices": _char(5000),
        "enabled": parse_bool,
        "model_type": _model_type,
    }


def create_template(state: InvenTreeState, data: dict[str, Any]) -> dict[str, Any]:
    with state.lock:
        parsers = _template_parsers()
        if state.api_version < GENERIC_PARAMETERS_API:
            parsers.pop("model_type")
            parsers.pop("enabled")
        clean = _validate(data, parsers, required=("name",))
        _template_name_unique(state, clean["name"])
        record = {**TEMPLATE_DEFAULTS, **clean, "pk": state.next_pk("templates")}
        state.templates[record["pk"]] = record
        return record


def update_template(state: InvenTreeState, template: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    with state.lock:
        clean = _validate(data, _template_parsers())
        if "name" in clean:
            _template_name_unique(state, clean["name"], exclude=template["pk"])
        template.update(clean)
        return template


def parameter_value(template: dict[str, Any], raw: Any) -> tuple[str, float | None]:
    """Validate ``data`` against its template: checkbox, choices, then units. Returns (data, data_numeric)."""
    data = parse_char(raw, max_length=500, allow_blank=False)
    if template["checkbox"]:
        data = "True" if parse_bool(data) else "False"
        return data, None
    choices = [c.strip() for c in (template["choices"] or "").split(",") if c.strip()]
    if choices and data not in choices:
        raise FieldInvalid("Invalid choice for parameter value")
    if template["units"]:
        try:
            return data, units.convert(data, template["units"])
        except ValueError as exc:
            raise FieldInvalid(str(exc)) from None
    return data, units.to_number(data)


def create_parameter(state: InvenTreeState, data: dict[str, Any], user: int | None) -> dict[str, Any]:
    """A part parameter in the layout of ``state.api_version`` (legacy ``part`` or generic ``model_type/id``)."""
    generic = state.api_version >= GENERIC_PARAMETERS_API
    with state.lock:
        errors: dict[str, list[str]] = {}
        if generic:
            try:
                model_type = _model_type(data["model_type"]) if "model_type" in data else None
                if model_type is None:
                    raise FieldInvalid(
                        REQUIRED if "model_type" not in data else "This field may not be null."
                    )
            except FieldInvalid as exc:
                errors["model_type"] = exc.messages
                model_type = None
            model_id = _model_id(state, model_type, data, errors)
        else:
            model_type = "part.part"
            model_id = None
            try:
                if "part" not in data:
                    raise FieldInvalid(REQUIRED)
                model_id = parse_pk(data["part"], state.parts, allow_null=False)
            except FieldInvalid as exc:
                errors["part"] = exc.messages
        template: dict[str, Any] | None = None
        try:
            if "template" not in data:
                raise FieldInvalid(REQUIRED)
            template = state.templates[parse_pk(data["template"], state.templates, allow_null=False)]  # type: ignore[index]
        except FieldInvalid as exc:
            errors["template"] = exc.messages
        note = _parameter_note(data, errors)
        value: tuple[str, float | None] | None = None
        if "data" not in data:
            errors["data"] = [REQUIRED]
        elif template is not None:
            try:
                value = parameter_value(template, data["data"])
            except FieldInvalid as exc:
                errors["data"] = exc.messages
        elif data["data"] in ("", None):
            errors["data"] = [BLANK]
        if errors:
            raise ApiError(400, errors)
        assert template is not None and value is not None
        for other in state.parameters_of(model_type, model_id):
            if (other["model_type"], other["model_id"], other["template"]) == (
                model_type,
                model_id,
                template["pk"],
            ):
                fields = "model_type, model_id, template" if generic else "part, template"
                raise ApiError(400, {"non_field_errors": [f"The fields {fields} must make a unique set."]})
        record = {
            "pk": state.next_pk("parameters"),
            "model_type": model_type,
            "model_id": model_id,
            "template": template["pk"],
            "data": value[0],
            "data_numeric": value[1],
            "note": note,
            "updated": utcnow(),
            "updated_by": user,
        }
        state.parameters[record["pk"]] = record
        state.file_parameter(record)
        return record


def _model_id(
    state: InvenTreeState, model_type: str | None, data: dict[str, Any], errors: dict[str, list[str]]
) -> int | None:
    if "model_id" not in data or data["model_id"] is None:
        errors["model_id"] = [REQUIRED if "model_id" not in data else "This field may not be null."]
        return None
    try:
        model_id = int(data["model_id"])
        if isinstance(data["model_id"], bool) or model_id < 0:
            raise ValueError
    except (TypeError, ValueError):
        errors["model_id"] = ["A valid integer is required."]
        return None
    tables = {
        "part.part": state.parts,
        "part.partcategory": state.categories,
        "stock.stockitem": state.stock_items,
    }
    if model_type is not None and model_id not in tables.get(model_type, {}):
        # Assumption: the message for a model_id with no object behind it.
        errors["model_id"] = [invalid_pk(model_id)]
    return model_id


def _parameter_note(data: dict[str, Any], errors: dict[str, list[str]]) -> str:
    try:
        return parse_char(data.get("note") or "", max_length=500)
    except FieldInvalid as exc:
        errors["note"] = exc.messages
        return ""


def update_parameter(
    state: InvenTreeState, parameter: dict[str, Any], data: dict[str, Any], user: int | None
) -> dict[str, Any]:
    with state.lock:
        errors: dict[str, list[str]] = {}
        template = state.templates[parameter["template"]]
        changes: dict[str, Any] = {}
        if "data" in data:
            try:
                changes["data"], changes["data_numeric"] = parameter_value(template, data["data"])
            except FieldInvalid as exc:
                errors["data"] = exc.messages
        if "note" in data:
            changes["note"] = _parameter_note(data, errors)
        if errors:
            raise ApiError(400, errors)
        parameter.update(changes, updated=utcnow(), updated_by=user)
        return parameter
