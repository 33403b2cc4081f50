"""Which DICOM attributes can identify a patient, and which of them modicseg's outputs may hold.

Source: DICOM PS3.15 (Security and System Management Profiles), Annex E "Attribute
Confidentiality Profiles", Table E.1-1 "Application Level Confidentiality Profile Attributes",
2024 editions: the attributes that the Basic Application Level Confidentiality Profile removes,
empties, replaces or cleans.  Written here as pydicom keywords, in the table's order (which is
alphabetical by attribute name); ``tests/test_privacy_canaries.py`` checks that every keyword is
in pydicom's data dictionary.  Not listed: the repeating-group Overlay Data and Overlay Comments
(60xx,3000 / 60xx,4000), which have no single keyword; modicseg never reads overlays.

modicseg reads none of these into its data model except the ones in :data:`RETAINED`: the UIDs
that tie a result to the images it was computed from (PS3.15 E.3.9 Retain UIDs Option) and the
series description / protocol name, which name the series to the user and are one input of the
weighting classification.  The DICOM SEG is built from an allow-list (``report.dicom_seg``), so
that none of the others reaches it either, at any depth of nesting.
"""

from __future__ import annotations

#: PS3.15 Table E.1-1, as pydicom keywords.
TABLE_E1_1 = (
    "AccessionNumber", "AcquisitionComments", "AcquisitionContextSequence", "AcquisitionDate",
    "AcquisitionDateTime", "AcquisitionDeviceProcessingDescription", "AcquisitionProtocolDescription",
    "AcquisitionTime", "ActualHumanPerformersSequence", "AdditionalPatientHistory", "AdmissionID",
    "AdmittingDate", "AdmittingDiagnosesCodeSequence", "AdmittingDiagnosesDescription", "AdmittingTime",
    "AffectedSOPInstanceUID", "Allergies", "Arbitrary", "AuthorObserverSequence", "BranchOfService",
    "CassetteID", "CommentsOnThePerformedProcedureStep", "ConcatenationUID",
    "ConfidentialityConstraintOnPatientDataDescription", "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence", "ContentCreatorName", "ContentCreatorIdentificationCodeSequence",
    "ContentDate", "ContentSequence", "ContentTime", "ContextGroupExtensionCreatorUID", "ContrastBolusAgent",
    "ContributionDescription", "CountryOfResidence", "CreatorVersionUID", "CurrentPatientLocation",
    "CustodialOrganizationSequence", "DataSetTrailingPadding", "DerivationDescription", "DetectorID",
    "DeviceSerialNumber", "DeviceUID", "DigitalSignatureUID", "DigitalSignaturesSequence",
    "DimensionOrganizationUID", "DischargeDiagnosisDescription", "DistributionAddress", "DistributionName",
    "DoseReferenceUID", "EndAcquisitionDateTime", "EthnicGroup", "ExpectedCompletionDateTime",
    "FailedSOPInstanceUIDList", "FiducialUID", "FillerOrderNumberImagingServiceRequest", "FrameComments",
    "FrameOfReferenceUID", "GantryID", "GeneratorID", "GraphicAnnotationSequence", "HumanPerformerName",
    "HumanPerformerOrganization", "IconImageSequence", "IdentifyingComments", "ImageComments",
    "ImagePresentationComments", "ImagingServiceRequestComments", "Impressions", "InstanceCoercionDateTime",
    "InstanceCreatorUID", "InstitutionAddress", "InstitutionCodeSequence", "InstitutionName",
    "InstitutionalDepartmentName", "InstitutionalDepartmentTypeCodeSequence", "InsurancePlanIdentification",
    "IntendedRecipientsOfResultsIdentificationSequence", "InterpretationApproverSequence", "InterpretationAuthor",
    "InterpretationDiagnosisDescription", "InterpretationIDIssuer", "InterpretationRecorder",
    "InterpretationText", "InterpretationTranscriber", "IrradiationEventUID", "IssuerOfAdmissionID",
    "IssuerOfPatientID", "IssuerOfServiceEpisodeID", "LargePaletteColorLookupTableUID", "LastMenstrualDate",
    "MAC", "MediaStorageSOPInstanceUID", "MedicalAlerts", "MedicalRecordLocator", "MilitaryRank",
    "ModifiedAttributesSequence", "ModifiedImageDescription", "ModifyingDeviceID",
    "NameOfPhysiciansReadingStudy", "NamesOfIntendedRecipientsOfResults", "Occupation",
    "OperatorIdentificationSequence", "OperatorsName", "OrderCallbackPhoneNumber", "OrderEnteredBy",
    "OrderEntererLocation", "OriginalAttributesSequence", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "OverlayDate", "OverlayTime", "ParticipantSequence",
    "PatientAddress", "PatientComments", "PatientID", "PatientSexNeutered", "PatientState",
    "PatientTransportArrangements", "PatientAge", "PatientBirthDate", "PatientBirthName", "PatientBirthTime",
    "PatientInstitutionResidence", "PatientInsurancePlanCodeSequence", "PatientMotherBirthName", "PatientName",
    "PatientPrimaryLanguageCodeSequence", "PatientPrimaryLanguageModifierCodeSequence",
    "PatientReligiousPreference", "PatientSex", "PatientSize", "PatientTelephoneNumbers", "PatientWeight",
    "PerformedLocation", "PerformedProcedureStepDescription", "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndDateTime", "PerformedProcedureStepEndTime", "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartDateTime", "PerformedProcedureStepStartTime",
    "PerformedStationAETitle", "PerformedStationGeographicLocationCodeSequence", "PerformedStationName",
    "PerformedStationNameCodeSequence", "PerformingPhysicianIdentificationSequence", "PerformingPhysicianName",
    "PersonAddress", "PersonIdentificationCodeSequence", "PersonName", "PersonTelephoneNumbers",
    "PhysicianApprovingInterpretation", "PhysiciansReadingStudyIdentificationSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PlacerOrderNumberImagingServiceRequest", "PlateID",
    "PreMedication", "PregnancyStatus", "ProtocolName", "ReasonForTheImagingServiceRequest", "ReasonForStudy",
    "ReferencedDigitalSignatureSequence", "ReferencedFrameOfReferenceUID",
    "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID", "ReferencedImageSequence",
    "ReferencedPatientAliasSequence", "ReferencedPatientSequence", "ReferencedPerformedProcedureStepSequence",
    "ReferencedSOPInstanceMACSequence", "ReferencedSOPInstanceUID", "ReferencedSOPInstanceUIDInFile",
    "ReferencedStudySequence", "ReferringPhysicianAddress", "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianName", "ReferringPhysicianTelephoneNumbers", "RegionOfResidence",
    "RelatedFrameOfReferenceUID", "RequestAttributesSequence", "RequestedContrastAgent",
    "RequestedProcedureComments", "RequestedProcedureDescription", "RequestedProcedureID",
    "RequestedProcedureLocation", "RequestedSOPInstanceUID", "RequestingPhysician", "RequestingService",
    "ResponsibleOrganization", "ResponsiblePerson", "ResultsComments", "ResultsDistributionListSequence",
    "ResultsIDIssuer", "ReviewerName", "ScheduledHumanPerformersSequence", "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence", "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepEndDate", "ScheduledProcedureStepEndTime", "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepLocation", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
    "ScheduledStationAETitle", "ScheduledStationGeographicLocationCodeSequence", "ScheduledStationName",
    "ScheduledStationNameCodeSequence", "ScheduledStudyLocation", "ScheduledStudyLocationAETitle", "SeriesDate",
    "SeriesDescription", "SeriesInstanceUID", "SeriesTime", "ServiceEpisodeDescription", "ServiceEpisodeID",
    "SmokingStatus", "SOPInstanceUID", "SourceImageSequence", "SpecialNeeds", "StationName",
    "StorageMediaFileSetUID", "StudyComments", "StudyDate", "StudyDescription", "StudyID", "StudyIDIssuer",
    "StudyInstanceUID", "StudyTime", "SynchronizationFrameOfReferenceUID", "TemplateExtensionCreatorUID",
    "TemplateExtensionOrganizationUID", "TextComments", "TextString", "TimezoneOffsetFromUTC", "TopicAuthor",
    "TopicKeywords", "TopicSubject", "TopicTitle", "TransactionUID", "UID",
    "VerifyingObserverIdentificationCodeSequence", "VerifyingObserverName", "VerifyingObserverSequence",
    "VerifyingOrganization", "VisitComments",
)

#: Table E.1-1 attributes of the *input* that modicseg's outputs may carry over, and why.  (A DICOM
#: SEG also holds its own values of a few others, never the source's: its content date and time,
#: device serial number "none", dimension organization UID, contribution description.)
RETAINED = {
    "SeriesDescription": "names the series to the user (inspect, report.json, NIfTI sidecars and file names); "
                         "one input of the weighting classification",
    "ProtocolName": "stands in for a missing SeriesDescription",
    # PS3.15 E.3.9 Retain UIDs Option: results point at the images they were computed from
    "StudyInstanceUID": "places the DICOM SEG in its study",
    "SeriesInstanceUID": "names the series used (report.json, sidecars); the SEG references it",
    "SOPInstanceUID": "the SEG references the source images",
    "MediaStorageSOPInstanceUID": "the same UID as SOPInstanceUID, in the file meta information",
    "ReferencedSOPInstanceUID": "the SEG references the source images",
    "SourceImageSequence": "the SEG references the source images (UIDs only)",
    "FrameOfReferenceUID": "places the SEG on the source series; decides resampling vs registration",
}

#: The attributes that must never reach any output of modicseg (unless the user asks for the SEG's
#: patient and study identifiers with --seg-keep-patient-identifiers).
NEVER_WRITTEN = tuple(keyword for keyword in TABLE_E1_1 if keyword not in RETAINED)
