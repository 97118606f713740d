"""English and Korean texts: error messages by code, account emails, and choosing between them.

English is written where an error is raised, next to the code, so that a code without an
entry here still answers in English. Korean lives in this catalog, keyed by the same stable
codes. A request's ``Accept-Language`` header chooses the language; without a usable one, the
account's own language does (``users.language``), and English otherwise.

Korean entries say what to do without repeating the values some English messages carry
(a number, an id); those stay in the error's ``details`` where a client needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import langcodes

ENGLISH: Final = "en"
KOREAN: Final = "ko"
LANGUAGES: Final = (ENGLISH, KOREAN)
"""The languages vidpipe speaks; the first is the default."""

_MAX_RANGES = 20
"""An ``Accept-Language`` header is read up to this many entries; browsers send a handful."""


def supported(language: str | None) -> str | None:
    """``language`` as one of :data:`LANGUAGES`, or ``None`` when it is none of them.

    Regional and script variants count as their language (``ko-KR`` is ``ko``).
    """
    if not language or language == "*":
        return None
    try:
        match = langcodes.closest_supported_match(language.strip(), list(LANGUAGES))
    except ValueError:  # langcodes' LanguageTagError included
        return None
    return str(match) if match else None


def from_accept_language(header: str | None) -> str | None:
    """The supported language a client prefers most in an ``Accept-Language`` header.

    ``None`` when the header is missing or names no supported language, so the caller can fall
    back to the account's language. Entries are weighed by their ``q`` value; ``q=0`` refuses.
    """
    ranked: list[tuple[float, int, str]] = []
    for position, entry in enumerate((header or "").split(",")[:_MAX_RANGES]):
        tag, _, params = entry.partition(";")
        language = supported(tag)
        weight = _quality(params)
        if language is not None and weight > 0:
            # Equal weights keep the client's order: earlier entries win.
            ranked.append((-weight, position, language))
    return min(ranked)[2] if ranked else None


def choose(accept_language: str | None, preferred: str | None = None) -> str:
    """The language to answer in: the header's choice, else ``preferred``, else English."""
    return from_accept_language(accept_language) or supported(preferred) or ENGLISH


def error_message(code: str, language: str, english: str) -> str:
    """The message for error ``code`` in ``language``; ``english`` when the catalog has none."""
    if language == KOREAN:
        return _KOREAN_ERRORS.get(code, english)
    return english


def has_translation(code: str) -> bool:
    """Whether error ``code`` has a Korean message in the catalog."""
    return code in _KOREAN_ERRORS


@dataclass(frozen=True)
class EmailText:
    """The subject and plain-text body of one email, placeholders filled in."""

    subject: str
    body: str


def email_text(purpose: str, language: str, **values: object) -> EmailText:
    """The email ``purpose`` (``verify_email``, ``reset_password``) in ``language``, filled with ``values``.

    Raises:
        KeyError: for a purpose without templates.
    """
    subject, body = _EMAILS[purpose][supported(language) or ENGLISH]
    return EmailText(subject=subject.format(**values), body=body.format(**values))


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


# TODO(i18n): only messages are translated; sentences inside ``details`` (the password policy's
# list of problems) stay English, and would need codes of their own to be looked up here.
_KOREAN_ERRORS: Final[dict[str, str]] = {
    # Accounts and tokens.
    "auth.unauthenticated": "인증이 필요합니다. 로그인한 뒤 다시 시도하세요.",
    "auth.forbidden": "이 작업을 할 권한이 없습니다.",
    "auth.rate_limited": "시도가 너무 많습니다. 잠시 기다린 뒤 다시 시도하세요.",
    "auth.token_missing": "이 요청에는 Bearer 액세스 토큰이 필요합니다.",
    "auth.token_expired": "토큰이 만료되었습니다. 다시 로그인하거나 새 링크를 요청하세요.",
    "auth.token_revoked": "비밀번호가 재설정되기 전에 발급된 액세스 토큰입니다. 다시 로그인하세요.",
    "auth.token_invalid": "토큰이 올바르지 않습니다. 다시 로그인하거나 새 링크를 요청하세요.",
    "auth.token_used": "이미 사용했거나 더 이상 쓸 수 없는 링크입니다. 새 링크를 요청하세요.",
    "auth.invalid_credentials": "로그인 정보 또는 비밀번호가 올바르지 않습니다.",
    "auth.email_taken": "이 이메일 주소로 가입한 계정이 이미 있습니다.",
    "auth.username_taken": "이미 사용 중인 사용자 이름입니다.",
    "auth.invalid_email": "이메일 주소 형식이 올바르지 않습니다.",
    "auth.invalid_username": "사용자 이름은 영문자, 숫자, 점, 대시, 밑줄로 된 3~32자여야 합니다.",
    "auth.weak_password": (
        "비밀번호가 너무 약합니다. 10자 이상으로 두 종류 이상의 문자를 섞고, "
        "사용자 이름이나 이메일 주소와 다르게 정하세요."
    ),
    "auth.refresh_invalid": "리프레시 토큰이 올바르지 않습니다. 다시 로그인하세요.",
    "auth.refresh_reused": "이미 사용한 리프레시 토큰입니다. 안전을 위해 세션을 종료했으니 다시 로그인하세요.",
    "auth.account_disabled": "비활성화된 계정입니다. 관리자가 다시 활성화할 수 있습니다.",
    "auth.account_locked": "이 계정의 로그인 실패가 너무 많습니다. 잠시 기다린 뒤 다시 시도하세요.",
    "auth.api_key_invalid": "API 키가 올바르지 않습니다.",
    "auth.api_key_revoked": "폐기된 API 키입니다. 계정 소유자에게 새 키를 요청하세요.",
    "auth.credentials_ambiguous": "Authorization 헤더와 X-API-Key 헤더 중 하나만 보내세요.",
    # Accounts managed by others: service accounts, API keys, roles.
    "admin.last_admin": "유일하게 활성화된 관리자입니다. 먼저 다른 계정을 관리자로 지정하세요.",
    "user.not_found": "계정을 찾을 수 없습니다.",
    "user.invalid_role": "지원하지 않는 역할입니다. details 또는 문서에 나온 역할 중 하나를 지정하세요.",
    "service_account.invalid_name": "이름은 영문자, 숫자, 점, 대시, 밑줄로 된 3~32자여야 합니다.",
    "service_account.name_taken": "같은 이름의 계정이 이미 있습니다. 다른 이름을 정하세요.",
    "service_account.not_found": "서비스 계정을 찾을 수 없습니다.",
    "service_account.too_many": (
        "더 이상 서비스 계정을 만들 수 없습니다. 기존 계정을 다시 쓰거나 관리자에게 문의하세요."
    ),
    "api_key.invalid_name": "키 이름의 길이가 허용 범위를 벗어났습니다.",
    "api_key.not_found": "API 키를 찾을 수 없습니다.",
    "api_key.too_many": "활성 API 키가 너무 많습니다. 하나를 폐기한 뒤 다시 시도하세요.",
    # The caller's profile.
    "profile.invalid_display_name": "표시 이름은 1~80자여야 하며 제어 문자를 포함할 수 없습니다.",
    "profile.description_too_long": "소개는 2000자 이하로 작성하세요.",
    "profile.invalid_description": "소개에 쓸 수 없는 제어 문자가 들어 있습니다.",
    "profile.birthdate_in_future": "생년월일은 미래 날짜일 수 없습니다.",
    "profile.birthdate_too_early": "생년월일은 1900년 1월 1일 이후여야 합니다.",
    "profile.invalid_language": "언어는 en 또는 ko 중 하나를 선택하세요.",
    # Jobs and videos.
    "job.not_found": "작업을 찾을 수 없습니다.",
    "job.unknown_stage": "알 수 없는 단계입니다. details에 나온 단계 중 하나를 지정하세요.",
    "job.not_finished": "작업이 아직 끝나지 않아 다시 시도할 수 없습니다.",
    "job.already_finished": "작업이 이미 끝났습니다.",
    "job.cancelled": "작업이 취소되었습니다.",
    "video.not_found": "동영상을 찾을 수 없습니다.",
    "video.not_probed": "동영상 분석이 아직 끝나지 않았습니다. 잠시 후 다시 시도하세요.",
    "video.busy": "동영상을 지금 처리하는 중입니다. 처리가 끝난 뒤 다시 시도하세요.",
    "video.title_required": "동영상 제목을 입력하세요.",
    "video.title_empty": "동영상 제목은 비워 둘 수 없습니다.",
    "video.title_too_long": "동영상 제목이 너무 깁니다. 더 짧게 입력하세요.",
    "video.description_too_long": "동영상 설명이 너무 깁니다. 더 짧게 입력하세요.",
    "video.invalid_cursor": "이 API가 발급한 커서가 아닙니다. 커서 없이 처음부터 다시 요청하세요.",
    "video.invalid_limit": "limit 값이 허용 범위를 벗어났습니다.",
    "video.unknown_status": "알 수 없는 동영상 상태입니다.",
    # Uploads and quotas.
    "upload.too_large": "파일이 허용된 최대 크기보다 큽니다.",
    "upload.invalid_size": "크기는 파일의 바이트 수로, 0보다 커야 합니다.",
    "upload.invalid_filename": "파일 이름은 폴더나 제어 문자 없이 255자 이하여야 합니다.",
    "upload.unsupported_type": "동영상 형식이 아닙니다. video/mp4 같은 동영상 미디어 타입을 보내세요.",
    "upload.not_found": "이 동영상은 API로 업로드되지 않았습니다.",
    "upload.not_multipart": "단일 PUT 업로드이므로 파트가 없습니다.",
    "upload.not_pending": "완료되었거나 중단된 업로드입니다. 이 주소로는 더 이상 데이터를 보낼 수 없습니다.",
    "upload.invalid_part": "이 업로드에 없는 파트 번호입니다.",
    "upload.parts_missing": "아직 업로드되지 않은 파트가 있습니다. 모든 파트를 올린 뒤 완료하세요.",
    "upload.incomplete": "동영상 파일이 아직 업로드되지 않았습니다. 업로드한 뒤 완료하세요.",
    "upload.size_mismatch": "받은 크기가 알려 준 크기와 다릅니다. 파일 전체를 다시 업로드하세요.",
    "upload.already_completed": "이미 완료된 업로드입니다. 동영상을 처리하는 중입니다.",
    "upload.job_gone": "업로드는 완료되었지만 작업이 더 이상 없습니다.",
    "url.expired": "만료되었거나 API가 서명하지 않은 주소입니다. API에 새 주소를 요청하세요.",
    "url.wrong_method": "이 주소는 해당 메서드를 허용하지 않습니다.",
    "quota.bytes_exceeded": "저장 용량 한도를 넘습니다. 동영상을 일부 삭제한 뒤 다시 시도하세요.",
    "quota.videos_exceeded": "동영상 개수 한도에 도달했습니다. 동영상을 일부 삭제한 뒤 다시 시도하세요.",
    "idempotency.key_reused": "같은 Idempotency-Key가 다른 요청 내용으로 이미 사용되었습니다. 새 키를 사용하세요.",
    "idempotency.invalid_key": "Idempotency-Key는 출력 가능한 ASCII 문자 1~255자여야 합니다.",
    # Webhooks.
    "webhook.not_found": "웹훅을 찾을 수 없습니다.",
    "webhook.url_invalid": "웹훅 주소가 올바르지 않습니다. 호스트를 포함하고 사용자 이름, 비밀번호, #조각은 빼세요.",
    "webhook.url_not_allowed": "이 웹훅 주소로는 보낼 수 없습니다. 공개된 http 또는 https 주소를 사용하세요.",
    "webhook.url_unresolvable": "웹훅 호스트 이름을 찾을 수 없습니다. 이름을 확인하세요.",
    "webhook.no_events": "이벤트를 하나 이상 구독하거나, 모든 이벤트를 받으려면 events를 빼세요.",
    "webhook.unknown_event": "구독할 수 없는 이벤트입니다.",
    "webhook.limit_reached": "더 이상 웹훅을 만들 수 없습니다. 하나를 삭제한 뒤 다시 시도하세요.",
    "webhook.limit_invalid": "limit 값이 허용 범위를 벗어났습니다.",
    "webhook.cursor_invalid": "이 API가 발급한 커서가 아닙니다. 커서 없이 처음부터 다시 요청하세요.",
    "webhook.inactive": "꺼져 있는 웹훅입니다. 먼저 active를 true로 설정하세요.",
    # Search.
    "search.empty_query": "검색어가 비어 있습니다. 한 단어 이상 입력하세요.",
    "search.query_too_long": "검색어가 너무 깁니다. 더 짧게 입력하세요.",
    "search.invalid_page": "페이지 번호는 1부터 시작합니다.",
    "search.invalid_per_page": "per_page 값이 허용 범위를 벗어났습니다.",
    "search.invalid_cues_per_video": "cues_per_video 값이 허용 범위를 벗어났습니다.",
    "search.page_too_deep": "이보다 뒤의 결과로는 페이지를 넘길 수 없습니다. 검색 조건을 좁히세요.",
    "search.unavailable": "검색 서비스를 잠시 사용할 수 없습니다. 잠시 후 다시 시도하세요.",
    "search.rejected": "검색 서비스가 요청을 거부했습니다.",
    # Requests and the server.
    "request.invalid": "요청 본문이나 매개변수가 올바르지 않습니다.",
    "request.method_not_allowed": "이 주소는 해당 메서드를 지원하지 않습니다.",
    "not_found": "이 주소에는 아무것도 없습니다.",
    "conflict": "요청이 현재 상태와 맞지 않습니다.",
    "input.invalid": "입력 내용을 사용할 수 없습니다.",
    "internal.error": "서버가 이 요청에 응답하지 못했습니다.",
    "internal.transient": "서비스를 잠시 사용할 수 없습니다. 잠시 후 다시 시도하세요.",
    "database.unavailable": "데이터베이스에 잠시 연결할 수 없습니다. 잠시 후 다시 시도하세요.",
    "storage.unavailable": "저장소를 잠시 사용할 수 없습니다. 잠시 후 다시 시도하세요.",
}

_EMAILS: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "verify_email": {
        ENGLISH: (
            "Confirm your email address for vidpipe",
            "Hello {name},\n\n"
            "Please confirm your email address by opening this link:\n\n"
            "{link}\n\n"
            "The link works for {hours} hours. If you did not create a vidpipe account, "
            "you can ignore this email.\n",
        ),
        KOREAN: (
            "vidpipe 이메일 주소를 확인해 주세요",
            "{name}님, 안녕하세요.\n\n"
            "아래 링크를 열어 이메일 주소를 확인해 주세요.\n\n"
            "{link}\n\n"
            "이 링크는 {hours}시간 동안 유효합니다. vidpipe 계정을 만든 적이 없다면 "
            "이 메일은 무시하셔도 됩니다.\n",
        ),
    },
    "reset_password": {
        ENGLISH: (
            "Reset your vidpipe password",
            "Hello {name},\n\n"
            "We received a request to reset the password of your vidpipe account. "
            "To choose a new password, open this link:\n\n"
            "{link}\n\n"
            "The link works once, for {minutes} minutes. If you did not ask for it, "
            "ignore this email; your password stays as it is.\n",
        ),
        KOREAN: (
            "vidpipe 비밀번호 재설정",
            "{name}님, 안녕하세요.\n\n"
            "vidpipe 계정의 비밀번호 재설정 요청을 받았습니다. "
            "새 비밀번호를 정하려면 아래 링크를 여세요.\n\n"
            "{link}\n\n"
            "이 링크는 {minutes}분 동안 한 번만 쓸 수 있습니다. 요청하신 적이 없다면 "
            "이 메일을 무시하세요. 비밀번호는 그대로 유지됩니다.\n",
        ),
    },
}
